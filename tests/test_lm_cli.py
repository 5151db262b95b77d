"""``python -m prefkit lm``: bad workdirs, incompatible checkpoints, divergence, strict JSON, PREFKIT_FAST, stale
temporary files, Ctrl-C, readable summary, progress off a terminal (issues 11 and 12, the reproducers of the fuzz
run). Each stage runs a few steps of the "small" preset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from prefkit.lm import cli, load_checkpoint, save_checkpoint
from prefkit.lm.cli import main as lm_main

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
FEW = ["--device", "cpu", "--no-progress", "--eval-every", "1000", "--pairs-per-prompt", "4"]


def _run(stage, work, *extra, preset=("--preset", "small")):
    steps = {"sft": "3", "rm": "2", "dpo": "2", "rlhf": "2", "online-dpo": "2"}[stage]
    argv = [stage, "--workdir", str(work), "--steps", steps, *FEW, *extra]
    if stage == "rlhf":
        argv += ["--k", "2"]
    return lm_main(argv + (list(preset) if preset else []))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir with sft.pt, prefs.pt and rm.pt of the small preset."""
    work = tmp_path_factory.mktemp("lm")
    assert _run("sft", work) == 0
    assert _run("rm", work, preset=None) == 0
    return work


def _strict_json(path: Path):
    """json.loads that refuses NaN/Infinity (strict JSON)."""
    def bad(c):
        raise AssertionError(f"{path.name} holds a bare {c}")

    return json.loads(path.read_text(), parse_constant=bad)


# ---- the workdir is checked before any training -------------------------------------------------------------
def test_workdir_not_a_folder_or_not_writable(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    t0 = time.perf_counter()
    assert _run("sft", f) == 2
    err = capsys.readouterr()
    assert "not a folder" in err.err and "afile" in err.err and "[sft]" not in err.out
    assert _run("sft", f / "sub") == 2  # a folder below a file cannot be created
    err = capsys.readouterr().err
    assert "not writable" in err and "nothing was trained" in err
    assert time.perf_counter() - t0 < 20  # no training happened (a stage trains for seconds; loose bound)
    assert f.read_text() == "x"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
def test_workdir_read_only(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert _run("sft", ro) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


# ---- checkpoints remember their preset, task and shape; incompatible ones are refused naming both files ------
def test_checkpoints_store_their_config(trained):
    for name in ("sft.pt", "rm.pt"):
        ck = load_checkpoint(trained / name)
        assert ck["meta"]["preset"] == "small" and ck["meta"]["dtype"] == "float32"
        assert ck["task"]["vocab"] == 4 and ck["model_config"]["n_embd"] == 64


def test_preset_on_a_later_stage_must_match(trained, capsys):
    assert _run("dpo", trained, preset=("--preset", "tiny")) == 2
    err = capsys.readouterr().err
    assert "--preset tiny" in err and "sft.pt" in err and "small" in err
    assert _run("dpo", trained, "--dtype", "float64", preset=None) == 2
    assert "--dtype" in capsys.readouterr().err


def test_reward_model_of_another_preset_is_refused(trained, tmp_path, capsys):
    other = tmp_path / "tiny"
    assert _run("sft", other, preset=("--preset", "tiny")) == 0
    (other / "rm.pt").write_bytes((trained / "rm.pt").read_bytes())  # the small preset's reward model
    assert _run("rlhf", other, preset=None) == 2
    err = capsys.readouterr().err
    assert str(other / "rm.pt") in err and str(other / "sft.pt") in err and "another task" in err
    assert not (other / "rlhf.pt").exists()


def test_preferences_of_another_task_name_both_files(trained, tmp_path, capsys):
    other = tmp_path / "seed1"
    assert _run("sft", other, "--seed", "1") == 0
    (other / "prefs.pt").write_bytes((trained / "prefs.pt").read_bytes())
    assert _run("dpo", other, preset=None) == 2
    err = capsys.readouterr().err
    assert "prefs.pt" in err and "sft.pt" in err and "seed 0" in err and "seed 1" in err


def test_checkpoint_whose_model_does_not_fit_its_task(trained, tmp_path, capsys):
    from prefkit.lm import GPT, SyntheticLanguage, tiny_config

    work = tmp_path / "vocab"
    task = SyntheticLanguage(vocab=4, response_len=3, prompt_len=3, n_prompts=8, seed=0)
    save_checkpoint(work / "sft.pt", GPT(tiny_config(vocab_size=3, block_size=16)), task)  # 3 ids < V + 2
    assert _run("dpo", work, preset=None) == 2
    err = capsys.readouterr().err
    assert "sft.pt" in err and "vocab_size=3" in err and "Traceback" not in err


# ---- divergence stops training and writes nothing ---------------------------------------------------------
def test_diverging_run_stops_and_writes_nothing(trained, tmp_path, capsys):
    work = tmp_path / "nan"
    assert _run("sft", work, "--lr", "1e30") == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "lr=1e+30" in err
    assert not work.exists() or not any(work.iterdir())
    before = sorted(p.name for p in trained.iterdir())
    assert _run("dpo", trained, "--lr", "1e30", preset=None) == 2
    assert "diverged" in capsys.readouterr().err
    assert sorted(p.name for p in trained.iterdir()) == before  # no dpo.pt, no history, no tmp


def test_training_loop_raises_on_non_finite_loss():
    from prefkit.lm import LMConfig, build_model, build_task, train_sft

    cfg = LMConfig(preset="small", progress=False)
    task = build_task(cfg)
    with pytest.raises(ValueError, match="diverged"):
        train_sft(build_model(cfg, task), task, steps=5, batch_size=8, lr=1e30, progress=False)


# ---- strict JSON -----------------------------------------------------------------------------------------
def test_histories_are_strict_json(trained, tmp_path):
    for f in trained.glob("history_*.json"):
        _strict_json(f)
    cli._write_json(tmp_path / "h.json", [{"a": float("nan"), "b": np.float32(1.5), "c": [np.inf, np.int64(3)]}])
    assert _strict_json(tmp_path / "h.json") == [{"a": None, "b": 1.5, "c": [None, 3]}]


# ---- PREFKIT_FAST selects the fast setting like --fast ---------------------------------------------------
def test_prefkit_fast_env(monkeypatch):
    from prefkit.lm import LMConfig

    args = cli.build_parser().parse_args(["sft"])
    monkeypatch.delenv("PREFKIT_FAST", raising=False)
    assert cli._config(args).sft_steps == LMConfig().sft_steps
    monkeypatch.setenv("PREFKIT_FAST", "1")
    assert cli._config(args).sft_steps == LMConfig.fast().sft_steps != LMConfig().sft_steps
    assert cli._config(cli.build_parser().parse_args(["sft", "--steps", "7"])).sft_steps == 7


# ---- stale temporary files of killed runs are removed ----------------------------------------------------
def test_stale_tmp_files_are_cleaned(tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = work / f"sft.pt.{int(dead.stdout)}.k3j2.tmp"  # its writer was killed (no longer runs)
    legacy = work / "rm.pt.a8b7c6.tmp"  # an older prefkit's name, without a process id, an hour old
    live = work / f"dpo.pt.{os.getpid()}.zz.tmp"  # a writer that still runs: kept
    other = work / "notes.tmp"  # not ours: kept
    for f in (stale, legacy, live, other):
        f.write_bytes(b"partial")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    assert _run("sft", work) == 0
    assert "removed 2 stale temporary file(s)" in capsys.readouterr().out
    assert not stale.exists() and not legacy.exists() and live.exists() and other.exists()


def test_checkpoint_writes_name_their_process(tmp_path, monkeypatch):
    """The temporary name carries the writer's pid (what the cleanup reads); a failed write leaves nothing."""
    from prefkit.lm import atomic_write

    seen = []

    def write(f):
        seen.extend(p.name for p in tmp_path.iterdir())
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "sft.pt", write)
    assert seen[0].startswith(f"sft.pt.{os.getpid()}.") and seen[0].endswith(".tmp")
    assert not list(tmp_path.iterdir())


# ---- Ctrl-C: one line naming the last complete checkpoint, no traceback ----------------------------------
def test_ctrl_c_prints_one_line(trained, monkeypatch, capsys):
    from prefkit.lm import pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_stage", interrupted)
    assert _run("dpo", trained, preset=None) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "rm.pt" in err[0], err  # rm.pt: the newest checkpoint
    assert _run("sft", trained.parent / "empty", preset=None) == 130
    assert "no checkpoint was written" in capsys.readouterr().err


def test_sigint_in_a_real_process(trained, tmp_path):
    """SIGINT (what Ctrl-C sends) to a running `python -m prefkit lm`: exit status 130, one line on stderr."""
    work = tmp_path / "sig"
    work.mkdir()
    for f in ("sft.pt", "prefs.pt"):
        (work / f).write_bytes((trained / f).read_bytes())
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    # SIGINT back to its default in the child: a test run started in the background of a non-interactive shell
    # (nohup, `cmd &` in a script) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "prefkit", "lm", "dpo", "--workdir", str(work), "--steps", "1000000", *FEW],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first = proc.stdout.readline()  # the header: training starts right after it
        assert first.startswith("prefkit lm dpo"), first
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "sft.pt" in lines[0] and "Traceback" not in err
    assert sorted(p.name for p in work.iterdir()) == ["prefs.pt", "sft.pt"]


# ---- readable summary, progress off a terminal ------------------------------------------------------------
def test_summary_headers_are_readable():
    from prefkit.lm import format_summary

    rows = [{"policy": "pi_ref (SFT)", "reward": 1.0, "kl_ref": -1e-9, "kl_star": 0.5, "objective": 1.0},
            {"policy": "pi* (exact)", "reward": 2.0, "kl_ref": 0.4, "kl_star": 0.0, "objective": 1.6}]
    text = format_summary(rows, beta=0.5)
    assert "J=E" not in text and "-0.0000" not in text and "0.0000" in text
    assert "J = E[r*] - beta*KL(pi||pi_ref)" in text and "beta = 0.5" in text
    assert max(len(ln) for ln in text.splitlines()) <= 100


def test_no_progress_bars_off_a_terminal(tmp_path, capsys):
    args = cli.build_parser().parse_args(["sft"])
    assert not sys.stderr.isatty() and cli._config(args).progress is False
    assert lm_main(["sft", "--workdir", str(tmp_path), "--steps", "3", "--device", "cpu", "--preset", "small"]) == 0
    out = capsys.readouterr()
    assert "\r" not in out.err and "\r" not in out.out
    assert sum(ln.startswith("sft: ") for ln in out.out.splitlines()) == 1
