"""Which localization loss, crop sampling and inference fit boxes best? Train each candidate, detect a fixed test
set with each inference setting, compare mAP at strict IoU.

    python bench/quality.py                                   # every candidate, quickstart budget each
    python bench/quality.py --only huber,riou+qfl             # some of them
    python bench/quality.py --budget-minutes 60               # start no training that would end past 60 min
    python bench/quality.py --config tiny --test-scenes 5 train.epochs=1   # smoke run of the whole path

Each candidate is one ``python train.py quality-<name> <seed>`` run with the same config (``--config``, default
the quickstart defaults), the same seed and its own overrides (``CANDIDATES``; the ``key=value`` arguments
given here apply to every candidate). A fixed test set of ``--test-scenes`` synthetic scenes (``tools/make_synthetic.py
--split test --seed 4242``, a split and seed training never uses, at the training scenes' size) is detected
with ``infer.py`` and each run's best checkpoint at the scenes' own resolution, once per inference setting
(``INFERENCE``: plain NMS, NMS + box voting, and box voting over the eight flips and quarter turns of
test-time augmentation), and scored with ``python -m eval.pascalvoc``. One table: mAP at IoU 0.50 / 0.75 /
0.85 / 0.90 / 0.95 and 50-95 per candidate and inference, with the training minutes (wall time of ``train.py``,
validation included) and the detection seconds; ``*`` marks the row of the current defaults (the candidate
whose resolved config is the one without candidate overrides, ``infer.py``'s default inference).

Piecewise: everything lands in ``--work-dir`` (default ``runs/quality_bench``). A candidate whose result is
there already is not trained again (a different config, seed or test set is refused: use another work dir);
an interrupted training is continued with ``train.py --resume``. ``--budget-minutes`` stops starting new
trainings once the next one would, at the slowest training seen so far, end past the budget.

Cost: each candidate trains for the quickstart budget, about 13-14 minutes on 2 CPU cores, so a full run of
the N candidates takes about N x 14 minutes (all 11: ~2 h 35 min), plus a minute for the test set and
about 3 minutes of detection per candidate (2 of them for the eight views).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from obbdet.config import resolve_config  # noqa: E402
from obbdet.run_outputs import best_checkpoint  # noqa: E402

TEST_SEED = 4242  # never a training seed: training scenes use data.synthetic_seed (0) with splits train / val
THRESHOLDS = ("0.50", "0.75", "0.85", "0.90", "0.95", "50-95")
# name -> training overrides. The loss candidates were compared with the crop sampling of the time (a training
# crop placed around an object half of the time, PREVIOUS_SAMPLING). Huber: box deltas + angle vector (the
# previous default); "+": beside the Huber terms; no "huber" in the name: instead of them (loss.keep_huber=false).
PREVIOUS_SAMPLING = ["data.object_focus_prob=0.5"]
CANDIDATES = {
    "huber": PREVIOUS_SAMPLING,
    "huber+qfl": [*PREVIOUS_SAMPLING, "loss.quality=qfl"],
    "huber+probiou": [*PREVIOUS_SAMPLING, "loss.box_loss=probiou"],
    "huber+kld": [*PREVIOUS_SAMPLING, "loss.box_loss=kld"],
    "huber+kld+qfl": [*PREVIOUS_SAMPLING, "loss.box_loss=kld", "loss.quality=qfl"],
    "gwd": [*PREVIOUS_SAMPLING, "loss.box_loss=gwd", "loss.keep_huber=false"],
    "riou+qfl": [*PREVIOUS_SAMPLING, "loss.box_loss=riou", "loss.keep_huber=false", "loss.quality=qfl"],
    # the centre is the largest error of the default's boxes: Huber terms (box and angle) that turn linear 5x
    # sooner, weighted so that large errors pull as before (delta x weight kept), pull 5x harder on the small
    # offsets that decide IoU 0.85-0.95
    "huber-d0.02": [*PREVIOUS_SAMPLING, "loss.huber_delta=0.02", "loss.box_weight=250", "loss.angle_weight=100"],
    # trucks and buses (a tenth of the vehicles, half of the classes' mAP) fit worst: crops placed around a
    # class-balanced object more often show them more often and more often whole
    "focus0.8": [],
    "focus1.0": ["data.object_focus_prob=1.0"],
    "focus0.8+rot1": ["data.rotate_prob=1.0"],
}
# inference setting -> infer.py options; "vote" is infer.py's default
INFERENCE = {
    "nms": ["--vote-iou", "0"],
    "vote": [],
    "d8+vote": ["--tta", "d8"],
}
DEFAULT_INFERENCE = "vote"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma list of candidates (default: all): " + ", ".join(CANDIDATES))
    parser.add_argument("--inference", default=",".join(INFERENCE),
                        help="comma list of inference settings (default: all): " + ", ".join(INFERENCE))
    parser.add_argument("--budget-minutes", type=float, default=0.0,
                        help="start no training that would end past this many minutes (0: no limit)")
    parser.add_argument("--test-scenes", type=int, default=100, help="synthetic test scenes (default 100)")
    parser.add_argument("--config", default=None, help="train.py --config for every candidate (default: quickstart)")
    parser.add_argument("--seed", type=int, default=167, help="train.py seed, the same for every candidate")
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "quality_bench"))
    parser.add_argument("--threads", type=int, default=0, help="infer.py --threads (0: torch's choice)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every candidate's training")
    args = parser.parse_intermixed_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; valid: {', '.join(CANDIDATES)}")
    args.inference = [n.strip() for n in args.inference.split(",") if n.strip()]
    unknown = [n for n in args.inference if n not in INFERENCE]
    if unknown or not args.inference:
        parser.error(f"unknown inference setting(s) {', '.join(unknown)}; valid: {', '.join(INFERENCE)}")
    if args.test_scenes <= 0:
        parser.error("--test-scenes must be > 0")
    args.names = names
    return args


def _run(cmd: list[str], log: Path) -> float:
    """Run ``cmd`` with its output appended to ``log``; minutes taken. Raises on failure, naming the log."""
    start = time.monotonic()
    with open(log, "a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=str(ROOT), NO_ALBUMENTATIONS_UPDATE="1"))
    if rc != 0:
        raise RuntimeError(f"{cmd[1]} failed (exit {rc}); see {log}")
    return (time.monotonic() - start) / 60


def resolved_config(args, name: str):
    """The resolved config of candidate ``name`` (type-checked now, before anything trains)."""
    return resolve_config(args.config, [*args.overrides, *CANDIDATES[name]])


def make_test_set(args, work: Path, scene_size: int) -> Path:
    test = work / f"test_{args.test_scenes}"
    _run([sys.executable, "tools/make_synthetic.py", str(test), "--n", str(args.test_scenes), "--seed",
          str(TEST_SEED), "--split", "test", "--width", str(scene_size), "--height", str(scene_size), "--quiet"],
         work / "test_set.log")
    return test


def _best_checkpoint(run_dir: Path) -> Path:
    found = best_checkpoint(run_dir)
    if found is None:
        raise RuntimeError(f"{run_dir}: no best-checkpoint-*epoch.pt (did the training evaluate?)")
    return found


def train(args, name: str, work: Path) -> float:
    """Train candidate ``name`` (continuing an interrupted run); minutes of wall time, earlier parts included."""
    run_name = f"quality-{name}"
    run_dir = work / "runs" / run_name
    marker = run_dir / "trained.json"
    if marker.is_file():
        return json.loads(marker.read_text())["minutes"]
    partial = run_dir / "partial_minutes.txt"  # wall time of interrupted attempts
    earlier = float(partial.read_text()) if partial.is_file() else 0.0
    cmd = [sys.executable, "train.py", run_name, str(args.seed), "--no-progress"]
    cmd += ["--config", args.config] if args.config else []
    cmd += ["--resume"] if (run_dir / "last.pt").is_file() else []
    cmd += [f"train.out_dir={work / 'runs'}", *args.overrides, *CANDIDATES[name]]
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        minutes = earlier + _run(cmd, work / f"{run_name}.log")
    except BaseException:
        partial.write_text(str(earlier + (time.monotonic() - start) / 60))
        raise
    marker.write_text(json.dumps({"minutes": minutes, "command": cmd}))
    return minutes


def evaluate(args, name: str, inference: str, work: Path, test: Path) -> dict:
    """Detect the test set with the candidate's best checkpoint and one inference setting: ``{"map": mAP per
    threshold (fractions), "seconds": detection wall time}``."""
    run_dir = work / "runs" / f"quality-{name}"
    det, scores = work / "detections" / inference / name, work / "eval" / inference / name
    log = work / f"quality-{name}.log"
    minutes = _run([sys.executable, "infer.py", str(test / "images"), "-1", str(_best_checkpoint(run_dir)), "obb",
                    "--out", str(det), "--quiet", "--threads", str(args.threads), *INFERENCE[inference]], log)
    _run([sys.executable, "-m", "eval.pascalvoc", "-gt", str(test / "labels"), "-det", str(det),
          "--iou-thresholds", "0.50:0.95:0.05", "-sp", str(scores), "-np", "-q"], log)
    return {"map": json.loads((scores / "results.json").read_text())["map"], "seconds": minutes * 60}


def check_work_dir(args, work: Path) -> None:
    """One work dir holds one comparison: the same config, overrides, seed and test set."""
    setup = {"config": args.config, "overrides": args.overrides, "seed": args.seed, "test_scenes": args.test_scenes,
             "test_seed": TEST_SEED}
    path = work / "setup.json"
    if path.is_file():
        earlier = json.loads(path.read_text())
        if earlier != setup:
            raise SystemExit(f"{work} holds a comparison with other settings ({earlier}); use another --work-dir")
    else:
        work.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(setup, indent=1))


def table(rows: dict, configs: dict, inference: list[str], default) -> str:
    """The comparison; ``default``: the config ``train.py`` resolves without a candidate's overrides."""
    header = (f"{'candidate':<16}{'inference':<10}" + "".join(f"{'mAP' + t:>10}" for t in THRESHOLDS)
              + f"{'train min':>11}{'detect s':>10}{'x nms':>7}")
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        baseline = row["inference"].get("nms", {}).get("seconds")
        for setting in inference:
            if setting not in row["inference"]:
                continue
            found = row["inference"][setting]
            mark = "*" if configs[name] == default and setting == DEFAULT_INFERENCE else " "
            ratio = f"{found['seconds'] / baseline:>7.2f}" if baseline else f"{'-':>7}"
            lines.append(f"{mark}{name:<15}{setting:<10}" + "".join(f"{found['map'][t]:>10.3f}" for t in THRESHOLDS)
                         + f"{row['minutes']:>11.1f}{found['seconds']:>10.0f}{ratio}")
    lines.append("* the current defaults (train.py's config, infer.py's default inference); x nms: detection "
                 "time over the same checkpoint's plain-NMS run")
    return "\n".join(lines)


def load_row(path: Path, name: str) -> dict:
    """A candidate's stored result; refused when it was trained with other overrides."""
    row = json.loads(path.read_text())
    if row["overrides"] != CANDIDATES[name]:
        raise SystemExit(f"{path}: trained with {row['overrides']}, but {name} is now {CANDIDATES[name]}; delete it "
                         f"(and runs/quality-{name}) to train it again")
    row.pop("map", None)  # the earlier layout: one plain-NMS result, measured again as "nms"
    row.setdefault("inference", {})
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    configs = {name: resolved_config(args, name) for name in args.names}
    work = Path(args.work_dir).resolve()
    check_work_dir(args, work)
    scene_size = next(iter(configs.values())).data.synthetic_size
    test = make_test_set(args, work, scene_size)
    start, slowest, rows, skipped = time.monotonic(), 0.0, {}, []
    for name in args.names:
        result_path = work / "results" / f"{name}.json"
        if result_path.is_file():
            rows[name] = load_row(result_path, name)
            slowest = max(slowest, rows[name]["minutes"])
    for name in args.names:
        if name not in rows:
            elapsed = (time.monotonic() - start) / 60
            if args.budget_minutes and elapsed + slowest > args.budget_minutes:
                skipped.append(name)
                continue
            print(f"[{elapsed:6.1f} min] training {name}: {' '.join(CANDIDATES[name]) or '(defaults)'}", flush=True)
            minutes = train(args, name, work)
            slowest = max(slowest, minutes)
            rows[name] = {"minutes": minutes, "overrides": CANDIDATES[name], "inference": {}}
        for setting in args.inference:
            if setting not in rows[name]["inference"]:
                rows[name]["inference"][setting] = evaluate(args, name, setting, work, test)
                result_path = work / "results" / f"{name}.json"
                result_path.parent.mkdir(parents=True, exist_ok=True)
                result_path.write_text(json.dumps(rows[name], indent=1))
    print(f"\nmAP on {args.test_scenes} synthetic test scenes (seed {TEST_SEED}), training seed {args.seed}, "
          f"config {args.config or 'quickstart'} {' '.join(args.overrides)}")
    default = resolve_config(args.config, args.overrides)
    print(table({name: rows[name] for name in args.names if name in rows}, configs, args.inference, default))
    if skipped:
        print(f"not run within --budget-minutes {args.budget_minutes:g}: {', '.join(skipped)} (run again to continue)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
