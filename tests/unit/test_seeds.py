from bracketlens.model.train import TrainConfig
from bracketlens.verify.seeds import ROLES, recurrence, seeds_json, train_and_localise

TINY = TrainConfig(n_train=3000, steps=60, batch_size=64, warmup=10, n_eval=300, n_near_miss=100)


def test_each_seed_is_trained_localised_and_counted():
    runs = train_and_localise([0, 1], base=TINY, n_eval=300)
    assert [r.seed for r in runs] == [0, 1]
    counts = recurrence(runs)
    assert set(counts) == set(ROLES)
    assert all(sum(c.values()) == 2 for c in counts.values())
    result = seeds_json(runs)
    assert (
        result["runs"][1]["roles"]["elevation_head"]["location"]
        == runs[1].localisation.elevation_head.location
    )
    assert 0 <= result["runs"][0]["accuracy"] <= 1
