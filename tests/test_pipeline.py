"""The pipeline: stages in order, markers, skipping what is done, --force, and `ray job submit`."""

from __future__ import annotations

import json
import shutil

import pytest

from deepcoder.pipeline import STAGES, Pipeline, PipelineError, compare

DATA_ONLY = ["train", "evaluate", "report", "serve"]


def _statuses(summary: dict) -> dict[str, str]:
    return {name: status for name, (status, _) in summary["timings"].items()}


def test_data_stages_are_skipped_when_done_and_redone_when_forced_or_changed(config, ray_cluster, tmp_path) -> None:
    config.generation.max_problems = 6
    out = tmp_path / "run"
    first = Pipeline(config, out, skip=DATA_ONLY).run()
    assert _statuses(first) == {"generate": "ran", "qc": "ran", "dataset": "ran",
                                **{s: "skipped (--skip)" for s in DATA_ONLY}}
    assert first["results"]["generate"]["written"] == 6 and first["results"]["generate"]["lost"] == 0
    assert first["results"]["dataset"]["rows_verified"] > 0
    for name in ("generate", "qc", "dataset"):
        assert json.loads((out / "stages" / f"{name}.json").read_text())["fingerprint"]

    again = Pipeline(config, out, skip=DATA_ONLY).run()
    assert {_statuses(again)[s] for s in ("generate", "qc", "dataset")} == {"cached"}

    forced = Pipeline(config, out, force=["qc"], skip=DATA_ONLY).run()
    assert _statuses(forced)["qc"] == "ran" and _statuses(forced)["generate"] == "cached"
    assert _statuses(forced)["dataset"] == "cached"  # the dataset reads trajectories, not the QC report

    config.data.max_seq_len = 900  # a data setting: QC and the dataset are stale, generation is not
    changed = Pipeline(config, out, skip=DATA_ONLY).run()
    assert _statuses(changed) | {} == {"generate": "cached", "qc": "ran", "dataset": "ran",
                                       **{s: "skipped (--skip)" for s in DATA_ONLY}}

    shutil.rmtree(out / "dataset")  # outputs gone behind the marker's back: redone
    assert _statuses(Pipeline(config, out, skip=DATA_ONLY).run())["dataset"] == "ran"
    assert len((out / "trajectories.jsonl").read_text().splitlines()) == 6  # never duplicated

    # the phase checks on this run: 1 and 2 pass; 3 and 4 fail and say what is missing
    from deepcoder.verify import run_phase

    for phase in (1, 2):
        results = run_phase(config, phase, out)
        assert all(r.status == "pass" for r in results), [(r.name, r.detail) for r in results]
    assert "6/6 re-verified" in run_phase(config, 1, out)[2].detail
    training = run_phase(config, 3, out)
    assert training[0].status == "fail" and "train_summary.json not found" in training[0].detail
    benchmarks = run_phase(config, 4, out)[0]
    assert benchmarks.status == "fail" and "evaluate stage did not finish" in benchmarks.detail
    corrupt = out / "corrupt"
    corrupt.mkdir()
    lines = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    for record in lines:
        record["final_answer"] = "wrong"
    (corrupt / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert run_phase(config, 1, corrupt)[2].status == "fail"  # wrong answers do not re-verify


def test_unknown_stage_is_a_clear_error(config, tmp_path) -> None:
    with pytest.raises(PipelineError, match="unknown stage.*trian"):
        Pipeline(config, tmp_path, force=["trian"])
    assert STAGES[0] == "generate" and STAGES[-1] == "serve"


def test_compare_reports_either_direction() -> None:
    def summary(success, fmt):
        return {"agentic": {"in_distribution": {"success": success, "format_validity": fmt}},
                "pass_at_k": {"mbpp": {"pass@1": success}}}
    table = compare({"base": summary(0.2, 0.1), "sad": summary(0.1, 0.6)})
    assert table["format_validity"]["delta"] == pytest.approx(0.5)
    assert table["success"]["delta"] == pytest.approx(-0.1)  # worse is reported as worse
    assert table["humaneval_pass@1"]["delta"] is None
