"""The stage plan: one table of stages per command, checked names, no torch to read it."""

import subprocess
import sys

import pytest

from bracketlens.errors import BracketLensError
from bracketlens.plan import COMMAND_STAGES, PassPlan, Stage, parse_stages


def test_every_stage_in_the_command_table_is_a_stage():
    for command, stages in COMMAND_STAGES.items():
        assert all(isinstance(s, Stage) for s in stages), command
    assert set(COMMAND_STAGES) == {"analyze", "report", "circuit", "seeds"}


def test_an_unknown_stage_is_an_error_that_names_the_known_ones():
    with pytest.raises(BracketLensError, match=r"unknown stage 'circuit'.*interventions"):
        parse_stages(["circuit"])
    assert parse_stages(["explain", Stage.EXPLORER]) == {Stage.EXPLAIN, Stage.EXPLORER}


def test_the_pass_plan_follows_the_stages_that_need_it():
    assert PassPlan.of(frozenset()) == PassPlan(False, False, False)
    report = PassPlan.of(COMMAND_STAGES["report"])
    assert report.read_feeders and report.intervention_slices and not report.ablation_table
    assert PassPlan.of(COMMAND_STAGES["circuit"]).ablation_table


def test_the_pipeline_refuses_an_unknown_stage_before_any_pass(random_model):
    from bracketlens.data.generate import evaluation_set
    from bracketlens.pipeline import run

    with pytest.raises(BracketLensError, match="unknown stage 'interventoins'"):
        run(random_model, evaluation_set(200, seed=0), stages=["interventoins"])


def test_reading_the_plan_imports_no_torch():
    code = "import sys, bracketlens.plan, bracketlens.cli; assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
