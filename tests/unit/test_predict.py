import threading

import torch
from tqdm.auto import tqdm

from bracketlens import BracketDataset, evaluate, predict_proba, tokenize
from bracketlens.model.predict import iter_batches, predict_logits


def test_batches_cover_every_string_once_with_trimmed_padding():
    tokens = tokenize(["()" * k for k in range(1, 21)] + [""])
    seen = []
    for idx, batch in iter_batches(tokens, batch_size=4):
        seen += idx.tolist()
        assert batch.shape[1] == int((tokens[idx] != 1).sum(-1).max())
    assert sorted(seen) == list(range(len(tokens)))


def test_batches_without_a_bar_never_wait_for_tqdms_lock():
    """tqdm's write lock is shared with forked children: one stopped while holding it
    would leave the parent waiting at its next bar, for ever. Batches without a bar do
    not take the lock, so another holder cannot stop them."""
    tokens = tokenize(["()" * k for k in range(1, 21)])
    held, release, done = threading.Event(), threading.Event(), []

    def hold() -> None:
        with tqdm.get_lock():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        batches = threading.Thread(target=lambda: done.append(list(iter_batches(tokens, 4))))
        batches.start()
        batches.join(10)
        assert done, "iter_batches waited for tqdm's lock"
    finally:
        release.set()
        holder.join()
        batches.join()


def test_batched_predictions_equal_one_pass(random_model):
    data = BracketDataset(["(" * k + ")" * k for k in range(20)] + [")(", "((", "()()"])
    one_pass = random_model(data.tokens)[:, 0]
    torch.testing.assert_close(
        predict_logits(random_model, data.tokens, batch_size=3), one_pass, atol=1e-5, rtol=0
    )
    p = predict_proba(random_model, data.tokens, batch_size=5)
    torch.testing.assert_close(p, one_pass.softmax(-1)[:, 1], atol=1e-6, rtol=0)


def test_evaluation_counts(random_model):
    data = BracketDataset(["()", "((", ")(", "(())"])
    result = evaluate(random_model, data)
    predicted = result.p_balanced > 0.5
    assert result.n == 4
    assert result.n_wrong == int((predicted != data.labels).sum())
    assert abs(result.accuracy - (1 - result.n_wrong / 4)) < 1e-12
    summary = result.to_dict()
    assert set(summary) == {"accuracy", "n", "n_wrong", "by_group"}
    assert sum(g["n"] for g in summary["by_group"].values()) == 4
    assert sum(g["n_wrong"] for g in summary["by_group"].values()) == result.n_wrong
    assert len(result.wrong) == result.n_wrong
