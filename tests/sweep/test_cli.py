"""The command line without Ray: refusals (exit 2, one line, nothing written), models, status, export."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import sweep_fakes
from sweep.cli import main
from sweep.fleet import ClusterConfig
from sweep.status import store_status
from sweep.lease import Lease
from sweep.store import Store


def invoke(*args):
    return CliRunner().invoke(main, list(args), prog_name="sweep")


@pytest.mark.parametrize("extra, fragment", [
    (["--classes", "10"], "class 10 is out of range"),
    (["--classes", "7-3"], "backwards"),
    (["--classes", "abc"], "not a class index"),
    (["--classes", "\u00b2"], "not a class index"),          # "²" passes str.isdigit() but not int()
    (["--jobs", "octave,paint"], "unknown job 'paint'"),
    (["--pairs", "1+12"], "out of range"),
    (["--pairs", "1+1"], "itself"),
    (["--pairs", "missing-file.txt"], "--pairs 'missing-file.txt': no such file"),
    (["--schedule", "no-such-preset"], "no-such-preset"),
    (["--variants", "blend"], "unknown variant"),
    (["--seeds", "0"], "--seeds"),
    (["--seeds", "abc"], "'abc' is not a valid integer"),     # click's own type check, one line too
    (["--device", "tpu"], "Invalid value for '--device'"),
    (["--job-schedule", "dream"], "write JOB=PRESET_OR_FILE"),
    (["--job-schedule", "dreem=tiny"], "no job named 'dreem'"),
    (["--job-schedule", "octave=no-such-preset"], "no-such-preset"),
    (["--job-schedule", "octave=tiny", "--job-schedule", "octave=digits"],   # the last one silently won
     "--job-schedule gives octave two schedules (tiny and digits): give each job one"),
    # an option no chosen job reads hides a forgotten job: refused, not ignored (a researcher's walk-through)
    (["--jobs", "octave", "--pairs", "1+2"], "--pairs given (read by addition, interpolate), but no chosen job"),
    (["--jobs", "octave", "--variants", "merge"], "--variants given (read by addition), but no chosen job"),
    (["--jobs", "addition", "--interpolate-pairs", "1+3"], "--interpolate-pairs given (read by interpolate)"),
    (["--jobs", "octave", "--layers", "block2"], "--layers given (read by directed-dream, dream)"),
    (["--layers", "block2"], "add the job to --jobs with the images it starts from (--images)"),   # image jobs
    (["--job-schedule", "dream=tiny"], "add it to --jobs with the images it starts from (--images)"),
    (["--jobs", "octave", "--job-schedule", "opposite=tiny"], "opposite is not among the jobs run (octave)"),
    # an empty entry of a comma list is a typo, refused as --classes 1,,2 is (the other lists dropped it)
    (["--classes", "1,,2"], "empty entry in --classes '1,,2'"),
    (["--jobs", "octave,,opposite"], "empty entry in --jobs 'octave,,opposite'"),
    (["--jobs", "octave,opposite,"], "empty entry in --jobs 'octave,opposite,'"),
    (["--jobs", "addition", "--variants", "merge,,juxtapose"], "empty entry in --variants 'merge,,juxtapose'"),
    (["--jobs", "addition", "--pairs", "1+2,,3+4"], "empty entry in --pairs '1+2,,3+4'"),
    (["--jobs", "interpolate", "--images", "noise:1", "--interpolate-pairs", "1+2,"],
     "empty entry in --interpolate-pairs '1+2,'"),
    (["--jobs", "dream", "--images", "noise:1", "--layers", "block2:0,,4"], "empty entry in --layers 'block2:0,,4'"),
    (["--jobs", "dream", "--images", "noise:1", "--layers", "block2+block3:,4"],
     "empty entry in --layers 'block2+block3:,4'"),
    (["--jobs", "dream", "--images", "noise:1", "--layers", "block2:-1"], "integers from 0 (map indices)"),
    (["--jobs", "dream", "--images", "noise:1", "--layers", "block2:0,64"],
     "layer block2 has 64 feature maps (0-63); asked for map 64"),
    (["--jobs", ""], "no job given ('')"),                     # an empty whole value keeps its own words
    # a blank --layers took the default dream layer silently, while --jobs "" is refused
    (["--jobs", "dream", "--images", "noise:1", "--layers", ""], "no layer given (--layers '')"),
    (["--jobs", "dream", "--images", "noise:1", "--layers", " "], "no layer given (--layers ' ')"),
    (["--jobs", "dream", "--images", "noise:1", "--layers", "block2", "--layers", ""],
     "empty entry in --layers ('block2', '')"),
    (["--jobs", " , "], "no job given (' , ')"),
])
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, extra, fragment):
    store = tmp_path / "store"
    result = invoke("run", "--store", str(store), "--model", "digits", "--weights", "random", *extra)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("Error: ") and fragment in lines[0]
    # click's usage errors keep its hint (issue 10, "Smaller"); the library's errors are the one line alone
    assert lines[1:] in ([], ["Try 'sweep run -h' for help."])
    assert not store.exists()


@pytest.mark.parametrize("option, value", [("--lease-timeout", "nan"), ("--lease-timeout", "inf"),
                                           ("--cpus-per-worker", "nan"), ("--gpu-wait", "nan"),
                                           ("--stall-timeout", "NaN")])
def test_a_number_of_seconds_or_cpus_that_is_not_finite_is_refused(tmp_path, option, value):
    """nan passes every bound (nan < 1 is false): a nan lease timeout rewrote the lease in a busy loop (its heartbeat
    waits timeout / 4), an infinite one ended the heartbeat thread (OverflowError), a nan CPU count failed after Ray
    had started (int(nan)), a nan stall timeout never saw a hung worker. The dry run: on main it plans, fast."""
    result = invoke("run", "--store", str(tmp_path / "store"), "--model", "digits", "--weights", "random",
                    "--dry-run", option, value)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: Invalid value for '{option}': '{value}' is not a finite number")
    assert not (tmp_path / "store").exists()


def test_usage_errors_are_one_error_line_and_click_hint():
    for args, fragment, hint in ((["run", "--model", "digits"], "Missing option '--store'", "sweep run -h"),
                                 (["run", "--store", "s", "--model", "digits", "--seeds", "x"], "'--seeds'",
                                  "sweep run -h"),
                                 (["paint"], "No such command 'paint'", "sweep -h")):
        result = invoke(*args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 2, result.output
        assert lines[0].startswith("Error: ") and fragment in lines[0]
        assert lines[1] == f"Try '{hint}' for help."


def test_bare_sweep_shows_help_and_version_is_known():
    from importlib.metadata import version
    bare = invoke()
    assert bare.exit_code == 0 and "Usage: sweep" in bare.output and "run" in bare.output and "Error" not in bare.output
    shown = invoke("--version")
    assert shown.exit_code == 0 and shown.output.strip() == f"sweep {version('classweep')}"


def test_an_output_head_the_model_lacks_is_refused(tmp_path):
    schedule = tmp_path / "aux.json"
    schedule.write_text('{"octaves": [{"size": 32, "iterations": 2}], "output": "AuxLogits"}')
    store = tmp_path / "store"
    result = invoke("run", "--store", str(store), "--model", "digits", "--schedule", str(schedule))
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("Error: schedule aux: output 'AuxLogits' is not a head of digits "
                                     "(use 'logits', or 'AuxLogits' with inception_v3)")
    assert not store.exists()


def test_an_output_that_is_a_hidden_layer_not_a_head_is_refused(tmp_path):
    """A hidden layer passed the head check (any layer name did) and every item then failed in its worker
    (`RuntimeError: Index tensor must have the same number of dimensions as input tensor`)."""
    schedule = tmp_path / "hidden.json"
    schedule.write_text('{"octaves": [{"size": 32, "iterations": 2}], "output": "block2"}')
    store = tmp_path / "store"
    result = invoke("run", "--store", str(store), "--model", "digits", "--schedule", str(schedule), "--dry-run")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("Error: schedule hidden: output 'block2' is a hidden layer of digits (1 x 64 x "
                                     "8 x 8), not a head giving one output per class (use 'logits', or "
                                     "'AuxLogits' with inception_v3)")
    assert not store.exists()


def test_a_job_schedule_the_network_cannot_take_is_refused_before_anything_runs(tmp_path):
    schedule = tmp_path / "small.json"
    schedule.write_text('{"octaves": [{"size": 2, "iterations": 2}]}')   # digits pools 2 px down to nothing
    store = tmp_path / "store"
    result = invoke("run", "--store", str(store), "--model", "digits", "--weights", "random",
                    "--job-schedule", f"addition={schedule}")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "Error: job addition: schedule small feeds digits 2-px images, which it cannot take (it was trained at "
        "32 px); give that job a schedule that fits with --job-schedule addition=PRESET_OR_FILE"]
    assert not store.exists()


def test_unknown_model_and_missing_weights(tmp_path):
    store = tmp_path / "store"
    result = invoke("run", "--store", str(store), "--model", "nosuchnet")
    assert result.exit_code == 2 and result.output.startswith("Error: unknown model 'nosuchnet'")
    result = invoke("run", "--store", str(store), "--model", "digits", "--weights", str(tmp_path / "w.pth"))
    assert result.exit_code == 2 and "not found" in result.output and "Traceback" not in result.output
    assert not store.exists()


def test_models_lists_the_demo_model():
    result = invoke("models")
    assert result.exit_code == 0
    digits = next(line for line in result.output.splitlines() if line.startswith("digits "))
    assert digits.split()[1:3] == ["10", "32"]
    assert any(line.startswith("googlenet ") and " 1000 " in line for line in result.output.splitlines())


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "store"
    sweep_fakes.build_store(path, engine=sweep_fakes.failing_run_batch)
    return path


def test_status_counts_per_job_and_failures(small_store):
    report = store_status(str(small_store))
    counts = {(job, variant): (done, total) for job, variant, done, total in report.counts}
    assert counts == {("octave", ""): (3, 4), ("opposite", ""): (4, 4), ("addition", "merge"): (2, 2),
                      ("addition", "juxtapose"): (2, 2)}
    assert [key for key, _ in report.still_failing] == [f"octave:-:{sweep_fakes.FAIL_TARGET}:-1:0"]
    result = invoke("status", "--store", str(small_store))
    assert result.exit_code == 1                                  # an item still failing, as `sweep run` (10.10)
    assert "octave" in result.output and "3/4" in result.output and "11/12" in result.output
    assert "1 item still failing" in result.output


def test_status_says_how_many_files_a_run_set_aside(small_store, tmp_path):
    """A file `sweep run` moved into quarantine/ (unreadable, or left by a stopped run) only showed as fewer items
    done, with no word why; status now counts the files set aside and says their items run again."""
    store = tmp_path / "damaged"
    shutil.copytree(small_store, store)
    sorted((store / "images").glob("part-*.parquet"))[0].write_bytes(b"not parquet")
    assert len(Store.open(str(store)).quarantine_unreadable().moved) == 1
    result = invoke("status", "--store", str(store))
    assert result.exit_code == 1 and (f"1 file set aside in {store}/quarantine/ (unreadable, or left by a stopped "
                                      f"run): `sweep run` runs again those of their items not stored since"
                                      in result.output), result.output
    assert "set aside" not in invoke("status", "--store", str(small_store)).output


def test_status_of_a_manifest_without_a_schedule_name_says_it_is_not_recorded():
    """A manifest written by hand, without `schedule`: status's first line said "schedule None"."""
    from sweep.status import StoreStatus
    manifest = {"model": "digits", "weights": "random", "schedule_id": "x", "n_classes": 10}
    assert StoreStatus("s", manifest, (), 0, (), 0).lines()[0] == (
        "store s: model digits (random), schedule not recorded (x), 10 classes")


def test_status_warns_of_keys_stored_twice(small_store, tmp_path):
    """A copied-in images/ file (a store put together by hand from two): the counts stay per key, and status says
    how many rows repeat a key and which the readers take."""
    store = tmp_path / "twice"
    shutil.copytree(small_store, store)
    first = sorted((store / "images").glob("part-*.parquet"))[0]
    shutil.copy(first, store / "images" / "zz-copied.parquet")
    report = store_status(str(store))
    assert report.done == store_status(str(small_store)).done and report.duplicates == pq.read_metadata(first).num_rows
    assert (f"warning: {report.duplicates} rows of images/ repeat a key stored in an earlier file (the readers take "
            "each key from the first file by name)") in report.lines()


def test_status_counts_the_images_outside_the_plan_on_a_line_of_their_own(tmp_path):
    """A manifest whose options lost `sources` (edited by hand) plans no item of the jobs from real images: status
    said 4/4 of a store holding 8 images, silently. The counts stay the plan's; the images beyond it are a line of
    their own, per job."""
    store = tmp_path / "s"
    sweep_fakes.build_store(store, classes="0-1", jobs="octave,opposite,transfigure", images=("noise:2",))
    whole = store_status(str(store))
    assert (whole.done, whole.total, whole.unplanned) == (8, 8, ())
    manifest = json.loads((store / "manifest.json").read_text())
    del manifest["options"]["sources"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    report = store_status(str(store))
    assert (report.done, report.total, report.unplanned) == (4, 4, (("transfigure", 4),))
    result = invoke("status", "--store", str(store))
    assert result.exit_code == 0, result.output                   # the plan is complete
    assert ("4 images outside the plan (stored, but the manifest's options plan no such item): transfigure 4"
            in result.output.splitlines())


def test_status_counts_the_failures_outside_the_plan_on_a_line_of_their_own_and_exits_on_the_plan(tmp_path):
    """A manifest whose classes no longer list a class that failed (edited by hand): its failures counted as still
    failing, so status exited 1 for good, though no run of this manifest tries them again. Now a line of their own,
    per job, and the exit status is the plan's."""
    store = tmp_path / "s"
    sweep_fakes.build_store(store, classes="0-3", jobs="octave", engine=sweep_fakes.failing_run_batch)
    assert [key for key, _ in store_status(str(store)).still_failing] == [f"octave:-:{sweep_fakes.FAIL_TARGET}:-1:0"]
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["options"]["classes"] = [c for c in range(4) if c != sweep_fakes.FAIL_TARGET]
    (store / "manifest.json").write_text(json.dumps(manifest))
    report = store_status(str(store))
    assert (report.done, report.total, report.still_failing, report.unplanned_failing) == (3, 3, (), (("octave", 1),))
    result = invoke("status", "--store", str(store))
    assert result.exit_code == 0, result.output                   # the plan is complete
    lines = result.output.splitlines()
    assert "failures: 1 failed attempt, 0 items still failing" in lines
    assert ("1 item outside the plan failed (not stored, and the manifest's options plan no such item: `sweep run` "
            "will not try again): octave 1") in lines


def test_status_refuses_a_manifest_planning_classes_its_model_does_not_have(small_store, tmp_path):
    """A hand-edited manifest whose classes (or pairs) reach past the model's: status counted items that can never
    be made (11/16), and exited 1 for good. Refused in one line naming them."""
    store = tmp_path / "edited"
    shutil.copytree(small_store, store)
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["options"]["classes"] = [0, 1, 2, 3, 12]
    manifest["options"]["pairs"] = [[0, 1], [2, 3], [3, 10]]
    (store / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("status", "--store", str(store))
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"Error: {store}/manifest.json plans classes its model does not have (10, 12: digits has 10 classes, 0-9): "
        f"status cannot count items that can never be made"]


def test_run_into_a_store_of_another_sweep_is_refused(small_store):
    before = sorted(p.name for p in small_store.rglob("*"))
    result = invoke("run", "--store", str(small_store), "--model", "digits", "--weights", "random",
                    "--schedule", "tiny", "--classes", "0-5", "--pairs", "0+1,2+3", "--batch-size", "4")
    assert result.exit_code == 2
    assert "holds a different sweep" in result.output and "classes" in result.output
    assert sorted(p.name for p in small_store.rglob("*")) == before


def test_the_same_sweep_typed_in_another_order_is_taken_not_refused(small_store):
    """small_store is `--jobs octave,opposite,addition --pairs 0+1,2+3` (variants merge,juxtapose): the same lists in
    another order plan the same items, and the dry run shows what the store holds instead of a refusal."""
    result = invoke("run", "--store", str(small_store), "--model", "digits", "--weights", "random",
                    "--schedule", "tiny", "--classes", "3,2,1,0", "--jobs", "addition,opposite,octave",
                    "--pairs", "2+3,0+1", "--variants", "juxtapose,merge", "--batch-size", "4", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "11/12 items already stored" in result.output


def test_export_writes_readable_names(small_store, tmp_path):
    result = invoke("export", "--store", str(small_store), "--out", str(tmp_path / "png"))
    assert result.exit_code == 0 and "wrote 11 PNG files" in result.output
    names = sorted(str(p.relative_to(tmp_path / "png")) for p in (tmp_path / "png").rglob("*.png"))
    assert "octave/0000_digit-0_s0.png" in names
    assert "addition-merge/0002_digit-2+0003_digit-3_s0.png" in names
    assert len(names) == 11
    assert (tmp_path / "png" / "octave" / "0000_digit-0_s0.png").read_bytes()[:4] == b"\x89PNG"
    for inside in (f"{small_store}/.", f"{small_store}/images"):
        into_itself = invoke("export", "--store", str(small_store), "--out", inside)
        assert into_itself.exit_code == 2 and "is inside the store" in into_itself.output
    assert not (Path(small_store) / "octave").exists() and not (Path(small_store) / "images" / "octave").exists()


def test_export_refuses_to_overwrite_other_files_unless_told_and_skips_the_same(small_store, tmp_path):
    out = tmp_path / "png"
    (out / "octave").mkdir(parents=True)
    (out / "octave" / "0000_digit-0_s0.png").write_bytes(b"the user's own picture")
    refused = invoke("export", "--store", str(small_store), "--out", str(out))
    assert refused.exit_code == 2, refused.output
    assert refused.output.strip().splitlines() == [
        f"Error: --out {out} already holds 1 file that export would write, with other contents "
        f"(octave/0000_digit-0_s0.png): give --overwrite to replace them, or export into another folder (files "
        f"with the same contents are left as they are)"]
    assert [p.name for p in out.rglob("*.png")] == ["0000_digit-0_s0.png"]
    replaced = invoke("export", "--store", str(small_store), "--out", str(out), "--overwrite")
    assert replaced.exit_code == 0 and replaced.output.strip() == f"wrote 11 PNG files under {out} (1 replaced)"
    again = invoke("export", "--store", str(small_store), "--out", str(out))
    assert again.exit_code == 0
    assert again.output.strip() == f"wrote 0 PNG files under {out} (11 already there, the same)"


def test_export_of_a_store_without_images_says_why(tmp_path):
    from sweep.driver import SweepConfig, prepare
    prepared = prepare(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                   jobs="octave", classes="0-1"))
    prepared.store.write_manifest(prepared.manifest)                  # a run that stored nothing yet
    result = invoke("export", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "png"))
    assert result.exit_code == 2 and "holds no images yet: run `sweep run` first" in result.output
    assert not (tmp_path / "png").exists()


def test_status_of_a_complete_store_exits_0(tmp_path):
    sweep_fakes.build_store(tmp_path / "s", classes="0-1", jobs="octave")
    result = invoke("status", "--store", str(tmp_path / "s"))
    assert result.exit_code == 0 and "2/2" in result.output
    assert "running" not in result.output
    lease = Lease.acquire(Store.open(str(tmp_path / "s")), "live-run")   # a driver at work on the store
    try:
        result = invoke("status", "--store", str(tmp_path / "s"))
    finally:
        lease.release()
    assert result.exit_code == 0 and "a sweep is running on this store" in result.output
    assert "run live-run" in result.output and f"pid {os.getpid()}" in result.output


@pytest.mark.parametrize("option, edit, problem", [
    ("jobs", None, "no jobs"), ("classes", None, "no classes"), ("seeds", None, "no seeds"),
    ("jobs", ["octave", "paint"], "unknown job 'paint'"),   # was "no paint", as if an option named paint were missing
])
def test_status_of_a_manifest_without_its_plan_says_so_in_one_line(small_store, tmp_path, option, edit, problem):
    """A hand-edited manifest whose options lack what the plan expands from (or name a job there is none of): one
    line, not a KeyError's traceback."""
    store = tmp_path / "edited"
    shutil.copytree(small_store, store)
    manifest = json.loads((store / "manifest.json").read_text())
    if edit is None:
        del manifest["options"][option]
    else:
        manifest["options"][option] = edit
    (store / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("status", "--store", str(store))
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"Error: {store}/manifest.json holds no sweep plan (options: {problem}): status cannot tell what is missing"]


def test_status_of_a_missing_store():
    result = invoke("status", "--store", "/nonexistent/store")
    assert result.exit_code == 2 and result.output.startswith("Error:") and "manifest" in result.output


def test_features_with_an_unknown_layer_or_map_is_refused_before_ray(small_store):
    result = invoke("analyze", "--store", str(small_store), "--features", "block9:0")
    assert result.exit_code == 2 and result.output.startswith("Error:") and "block9" in result.output
    result = invoke("analyze", "--store", str(small_store), "--features", "block3:500")
    assert result.exit_code == 2 and "500" in result.output
    assert not (small_store / "analysis").exists()


def test_features_at_an_unknown_size_is_refused_by_the_cli_and_the_library(small_store):
    from sweep.features import FeatureConfig, check
    from sweep.plan import PlanError
    result = invoke("analyze", "--store", str(small_store), "--features", "block3:0", "--feature-size", "huge")
    assert result.exit_code == 2 and "--feature-size" in result.output and "'input', 'stored'" in result.output
    with pytest.raises(PlanError, match="'huge'"):
        check(FeatureConfig(store=str(small_store), layer="block3", maps=(0,), size="huge"))
    assert not (small_store / "analysis").exists()


@pytest.mark.parametrize("extra, fragment", [
    (["--margin-share", "nan"], "Invalid value for '--margin-share': 'nan' is not a finite number"),
    (["--features", ""], "--features '': expected LAYER:MAPS"),   # given empty: refused, as `run --jobs ""`
    (["--graph-ranges", "0-4,4-9"], "Invalid value for '--graph-ranges': '0-4,4-9': 0-4 and 4-9 overlap (a class "
                                    "belongs to one range at most)"),
    (["--graph-ranges", "halfs"], "Invalid value for '--graph-ranges': 'halfs': give halves, all or class ranges "
                                  "such as 0-499,500-999"),
])
def test_analyze_refuses_an_option_value_that_means_nothing(small_store, tmp_path, extra, fragment):
    store = tmp_path / "store"
    shutil.copytree(small_store, store)   # before the fix the analysis ran: not in the shared store
    result = invoke("analyze", "--store", str(store), *extra)
    assert result.exit_code == 2 and result.output.startswith(f"Error: {fragment}"), result.output
    assert not (store / "analysis").exists()


def test_feature_options_without_features_are_refused_not_ignored(small_store):
    result = invoke("analyze", "--store", str(small_store), "--feature-size", "stored", "--workers", "2")
    assert result.exit_code == 2 and "--feature-size, --workers only apply to --features" in result.output
    result = invoke("analyze", "--store", str(small_store), "--weights", "random")
    assert result.exit_code == 2 and "--weights only applies to --features" in result.output
    assert not (small_store / "analysis").exists()


def test_demo_runs_the_digits_sweep_then_analysis_and_figures(monkeypatch, tmp_path):
    import sweep.cli as cli
    from sweep.driver import SweepSummary
    calls = []

    class Summary:
        def lines(self):
            return ["analysed"]

    def fake_run_sweep(config):
        calls.append(("run", config))
        return SweepSummary(config.store, 110, 110, 0, (), 1.0, 2, "cpu", 0, False)

    monkeypatch.setattr(cli, "run_sweep", fake_run_sweep)
    monkeypatch.setattr(cli, "run_score", lambda config: calls.append(("score", config)) or Summary())
    monkeypatch.setattr(cli, "analysis_functions", lambda: (
        lambda store, metric="cosine": calls.append(("analyze", store)) or Summary(),
        lambda store, out=None: calls.append(("figures", store)) or tmp_path / "index.html"))
    result = invoke("demo", "--store", str(tmp_path / "d"))
    assert result.exit_code == 0, result.output
    assert [c[0] for c in calls] == ["run", "score", "analyze", "figures"]
    assert (calls[1][1].store, calls[1][1].model) == (str(tmp_path / "d"), "digits-resnet")
    config = calls[0][1]
    assert (config.model, config.schedule, config.jobs, config.classes, config.pairs, config.seeds) == (
        "digits", "digits", None, "all", "all", 1)
    assert result.output.strip().endswith(f"report: {tmp_path / 'index.html'}")


def test_the_demo_on_a_store_of_another_sweep_says_to_give_it_another_store(tmp_path):
    """The refusal said "use another --store, or the store's own settings", but the demo takes no sweep settings."""
    from sweep.driver import SweepConfig, prepare
    from sweep.store import IMAGES, Store
    store = tmp_path / "store"
    other = prepare(SweepConfig(store=str(store), model="digits", weights="random", schedule="tiny", jobs="octave",
                                classes="0-1"))
    Store.open(str(store)).write_manifest(other.manifest)
    Store.open(str(store)).write_bytes(f"{IMAGES}/part-000000-octave-0.parquet", b"PAR1")   # held to its settings
    result = invoke("demo", "--store", str(store))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: store {store} holds another sweep than the demo's: "
                                                   f"weights is \"random:seed=0\" in the store, \"shipped\" here")
    assert lines[0].endswith(f"(give the demo another --store; {store} resumes with its own `sweep run` command)")
    assert "the store's own settings" not in lines[0]


def test_a_store_whose_first_run_wrote_nothing_takes_a_corrected_command(tmp_path):
    """Issue 10 ("Smaller"): the manifest of a run that stored no image does not hold the store to that run's
    settings; once an image is stored, a change is refused, naming the schedules by name."""
    from sweep.driver import SweepConfig, prepare
    from sweep.store import Store
    store = tmp_path / "store"
    first = prepare(SweepConfig(store=str(store), model="digits", weights="random", schedule="tiny"))
    Store.open(str(store)).write_manifest(first.manifest)            # a first run that wrote nothing else
    args = ("run", "--store", str(store), "--model", "digits", "--weights", "random", "--schedule", "digits")
    corrected = invoke(*args, "--dry-run")
    assert corrected.exit_code == 0, corrected.output
    assert prepare(SweepConfig(store=str(store), model="digits", weights="random",
                               schedule="digits")).manifest["schedule"] == "digits"
    (store / "images").mkdir()
    (store / "images" / "part-000000-octave-0.parquet").write_bytes(b"PAR1")   # now the store holds an image file
    refused = invoke(*args, "--dry-run")
    assert refused.exit_code == 2
    assert 'schedule is "tiny" in the store, "digits" here' in refused.output


@pytest.fixture
def handmade_store(tmp_path, monkeypatch):
    """tests/analysis's hand-designed store (six classes, octave, opposite and addition images), fresh per test."""
    from pathlib import Path
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "analysis"))
    from handmade import make_small_store
    return make_small_store(tmp_path / "handmade")


def test_score_says_how_its_scorer_reaches_the_report(monkeypatch, tmp_path):
    """Audit #6: the scorer shows in the transfer table only after the analysis runs again; `score` says so."""
    import sweep.cli as cli
    from sweep.score import ScoreSummary
    store = str(tmp_path / "s")
    for scored, said in ((12, True), (0, False)):
        monkeypatch.setattr(cli, "run_score", lambda config: ScoreSummary(store, "other.w", 12, scored, 12 - scored,
                                                                          1.0))
        result = invoke("score", "--store", store, "--model", "digits-resnet")
        assert result.exit_code == 0, result.output
        last = result.output.strip().splitlines()[-1]
        assert (f"after `sweep analyze --store {store}`" in last) == said, result.output



def test_score_with_the_generating_model_does_not_promise_the_transfer_table(monkeypatch, tmp_path):
    """The transfer table reads the stored logits for the generating model's scorer id, never its `scores/`: `score`
    with that model said its scores would show after `sweep analyze`."""
    import sweep.cli as cli
    from sweep.score import ScoreSummary
    store = str(tmp_path / "s")
    monkeypatch.setattr(cli, "run_score", lambda config: ScoreSummary(store, "digits.shipped", 12, 12, 0, 1.0,
                                                                      generator=True))
    result = invoke("score", "--store", store, "--model", "digits")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == ("digits.shipped is the store's generating model: its scores "
                                                      "check the stored logits, which the transfer table reads for "
                                                      "it (not these scores)")


def test_directions_says_index_html_links_its_figures_after_the_next_figures(handmade_store, tmp_path):
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n0,a\n1,a\n2,b\n3,b\n4,b\n")
    for out, suffix in ((None, ""), (str(tmp_path / "elsewhere"), f" --out {tmp_path / 'elsewhere'}")):
        result = invoke("directions", "--store", handmade_store, "--groups", str(groups), "--components", "3",
                        *(["--out", out] if out else []))
        assert result.exit_code == 0, result.output
        assert result.output.strip().splitlines()[-1] == (
            f"index.html links these figures from the next `sweep figures --store {handmade_store}{suffix}` on")


def test_figures_say_when_scores_are_newer_than_the_analysis(handmade_store):
    from handmade import write_scorer
    assert invoke("analyze", "--store", handmade_store).exit_code == 0
    write_scorer(handmade_store)
    result = invoke("figures", "--store", handmade_store)
    assert result.exit_code == 0, result.output
    assert "the store's scores (`sweep score`) are newer than the analysis: running `sweep analyze --metric " \
           "euclidean` first" in result.output.splitlines()


def test_analyze_graphs_the_halves_by_default_and_refuses_ranges_past_the_last_class(handmade_store):
    result = invoke("analyze", "--store", handmade_store)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines if "graph of classes" in line] == [
        "nearest-neighbour graph of classes 0-2", "nearest-neighbour graph of classes 3-5"]
    result = invoke("analyze", "--store", handmade_store, "--graph-ranges", "0-2,3-6")
    assert result.exit_code != 0 and result.output == ("Error: --graph-ranges '0-2,3-6': 3-6 goes past the last "
                                                       "class, 5 (the model has 6 classes)\n")


def test_figures_keep_trajectory_videos_until_dropped_and_name_keys_with_snapshots(handmade_store):
    """Audit #9 and #7 through the command line."""
    from pathlib import Path
    from sweep.store import TRAJECTORIES, Store
    from test_stability import A, B, trajectory_rows
    Store.open(handmade_store).write_table(f"{TRAJECTORIES}/part-1.parquet", trajectory_rows(keys=(A, B)))
    wrong = invoke("figures", "--store", handmade_store, "--trajectories", "octave:-:9:-1:0")
    assert wrong.exit_code == 2 and wrong.output.splitlines() == [
        f"Error: no snapshots of octave:-:9:-1:0 in {handmade_store}/{TRAJECTORIES}/; keys with snapshots: {A}, {B}"]
    gif = Path(handmade_store) / "figures" / f"trajectory-{A.replace(':', '_')}.gif"
    assert invoke("figures", "--store", handmade_store, "--trajectories", A).exit_code == 0 and gif.exists()
    assert invoke("figures", "--store", handmade_store).exit_code == 0 and gif.exists()
    assert invoke("figures", "--store", handmade_store, "--drop-trajectories").exit_code == 0 and not gif.exists()
    assert "--drop-trajectories" in invoke("figures", "--help").output


def test_figures_into_a_file_is_one_clear_line_and_writes_nothing(handmade_store, tmp_path):
    """Audit nit: `figures --out afile` printed pyarrow's raw `Cannot create directory ... [errno 20]`."""
    from pathlib import Path
    afile = tmp_path / "afile"
    afile.write_text("mine")
    result = invoke("figures", "--store", handmade_store, "--out", str(afile))
    assert result.exit_code == 2 and result.output.splitlines() == [
        f"Error: {afile} is a file, not a folder (the output goes into a directory)"]
    assert afile.read_text() == "mine" and not (Path(handmade_store) / "analysis").exists()
    (Path(handmade_store) / "figures").write_text("a file where the default folder goes")
    result = invoke("figures", "--store", handmade_store)
    assert result.exit_code == 2 and "figures is a file, not a folder" in result.output


@pytest.mark.parametrize("command", ["figures", "directions", "compare", "stability"])
@pytest.mark.parametrize("inside", ["", "analysis", "images", "images/report", "leases", ".tmp/x"])
def test_output_into_a_stores_root_or_own_folder_is_refused_before_anything_is_written(handmade_store, tmp_path,
                                                                                     command, inside):
    """`--out STORE` put the figures among the store's tables (and `--out STORE/analysis` among the analysis')."""
    from pathlib import Path
    out = str(Path(handmade_store, inside)) if inside else handmade_store
    before = sorted(p.relative_to(handmade_store) for p in Path(handmade_store).rglob("*"))
    groups = tmp_path / "groups.csv"
    groups.write_text("group,class\na,0\nb,1\n")
    extra = {"figures": ["--store", handmade_store], "directions": ["--store", handmade_store, "--groups", str(groups)],
             "compare": [handmade_store, handmade_store], "stability": [handmade_store, handmade_store]}[command]
    result = invoke(command, *extra, "--out", out)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1].startswith(f"Error: --out {out} is "), result.output
    assert f"{handmade_store}/figures" in result.output
    assert sorted(p.relative_to(handmade_store) for p in Path(handmade_store).rglob("*")) == before


def test_output_into_a_folder_of_its_own_inside_the_store_is_taken(handmade_store):
    from pathlib import Path
    own = invoke("figures", "--store", handmade_store, "--out", str(Path(handmade_store, "report-2")))
    assert own.exit_code == 0 and (Path(handmade_store, "report-2") / "index.html").exists()


@pytest.fixture
def figures_calls(monkeypatch, tmp_path) -> list:
    """The calls `sweep figures` makes to `write_figures` (replaced: returns tmp_path/index.html)."""
    import sweep.cli as cli
    calls = []
    monkeypatch.setattr(cli, "analysis_functions", lambda: (None, lambda *args, **kwargs: calls.append(
        (args, kwargs)) or tmp_path / "index.html"))
    return calls


@pytest.fixture
def two_seed_store(handmade_store, tmp_path) -> str:
    """The hand-designed store (seed 0's images only) of a sweep run with --seeds 2."""
    from handmade import OPTIONS, make_small_store
    return make_small_store(tmp_path / "two", options={**OPTIONS, "seeds": 2})


@pytest.mark.parametrize("given, seeds, closing", [
    ([], None, ""), (["--seeds", "all"], None, ""), (["--seeds", "0"], (0,), " (seed 0 of 0-1)"),
    (["--seeds", " 1 , 0,1"], (0, 1), ""),   # every seed, however named: the whole report
])
def test_figures_seeds_reach_write_figures_and_the_closing_line(handmade_store, two_seed_store, figures_calls,
                                                                tmp_path, given, seeds, closing):
    result = invoke("figures", "--store", two_seed_store, "--trajectories", "k", *given)
    assert result.exit_code == 0, result.output
    ((args, kwargs),) = figures_calls
    assert [type(args[0]), args[0].uri, *args[1:]] == [Store, two_seed_store, None]
    assert kwargs == dict(trajectories=("k",), keep_trajectories=True, seeds=seeds, processes=None)
    lines = result.output.splitlines()
    assert lines[-1] == f"report: {tmp_path / 'index.html'}{closing}"
    hint = "drawing the images of all 2 seeds (0-1); `--seeds 0` draws a smaller report, of seed 0's only"
    assert lines[:-1] == ([hint] if not given else [])   # only when --seeds is not given
    if not given:   # nor for a store of one seed
        assert invoke("figures", "--store", handmade_store).output.splitlines()[:-1] == []



def test_figures_processes_reach_write_figures(handmade_store, figures_calls):
    """`--processes N` draws the interpolations on N worker processes (1: in this process); without it
    `write_figures` follows the CPUs (None); 0 is refused."""
    assert invoke("figures", "--store", handmade_store, "--processes", "3").exit_code == 0
    assert invoke("figures", "--store", handmade_store).exit_code == 0
    assert [kwargs["processes"] for _, kwargs in figures_calls] == [3, None]
    assert invoke("figures", "--store", handmade_store, "--processes", "0").exit_code != 0

@pytest.mark.parametrize("value, fragment", [
    ("2", "Error: --seeds 2: the store has no such seed; its seeds are 0-1 (its sweep ran with --seeds 2)"),
    ("0,3", "Error: --seeds 3: the store has no such seed; its seeds are 0-1"),
    ("0-1", "Error: Invalid value for '--seeds': '0-1' is neither all nor a comma list of seeds (e.g. 0 or 0,2)"),
    ("0,", "Error: Invalid value for '--seeds': '0,' is neither all"),
    ("-1", "Error: Invalid value for '--seeds': '-1' is neither all"),
    ("", "Error: Invalid value for '--seeds': '' is neither all"),
    ("first", "Error: Invalid value for '--seeds': 'first' is neither all"),
])
def test_figures_refuse_a_seed_the_store_lacks_and_a_malformed_list(two_seed_store, figures_calls, tmp_path, value,
                                                                     fragment):
    result = invoke("figures", "--store", two_seed_store, "--seeds", value)
    assert result.exit_code == 2 and result.output.splitlines()[0].startswith(fragment), result.output
    assert figures_calls == [] and not (tmp_path / "two" / "analysis").exists()


@pytest.mark.parametrize("analysed", [True, False])
def test_figures_of_a_store_whose_images_were_removed_say_only_that_it_holds_none(two_seed_store, analysed):
    """An emptied images/ was "newer than the analysis" (or "no analysis yet"), and a store of two seeds got the
    --seeds hint, before "holds no images yet": now that line alone."""
    if analysed:
        assert invoke("analyze", "--store", two_seed_store).exit_code == 0
    for path in Path(two_seed_store, "images").iterdir():
        path.unlink()
    result = invoke("figures", "--store", two_seed_store)
    assert result.exit_code == 2 and result.output.splitlines() == [
        f"Error: store {two_seed_store} holds no images yet: run `sweep run` first"]
    assert not Path(two_seed_store, "figures").exists()


@pytest.mark.parametrize("args, named", [
    (["export", "--store", "{store}", "--out", ""], "'--out'"),         # wrote the PNGs into the current folder
    (["compare", "{store}", "--out", ""], "'--out'"),                  # a ValueError's traceback
    (["compare", "{store}", " ", "--out", "cmp"], "'STORES...'"),
    (["stability", "{store}", "--out", " "], "'--out'"),
    (["figures", "--store", "{store}", "--out", ""], "'--out'"),        # the default folder, silently
    (["status", "--store", ""], "'--store'"),                           # the current folder taken for the store
    (["run", "--store", "", "--model", "digits", "--weights", "random", "--schedule", "tiny", "--classes", "0",
      "--jobs", "octave"], "'--store'"),                                # would make the current folder a store
    (["run", "--store", "s", "--model", "digits", "--weights", "random", "--schedule", "tiny", "--classes", "0",
      "--jobs", "dream", "--images", "x.png", "--images", ""], "'--images'"),   # the current folder's pictures
])
def test_an_empty_store_or_out_is_refused_not_taken_for_the_current_folder(handmade_store, tmp_path, monkeypatch,
                                                                            args, named):
    """`--out "$OUT"` with OUT unset: one line, exit status 2, nothing written."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    result = invoke(*(arg.format(store=handmade_store) for arg in args))
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[0] == f"Error: Invalid value for {named}: an empty path (write . for the " \
                                            f"current folder)"
    assert not list(here.iterdir()) and not Path(handmade_store, "figures").exists()


# ---- wiring: every option of a command reaches the library's config (the library call replaced, no Ray) ---------

def recorded_calls(monkeypatch, module, name: str, returns) -> list:
    """Replace `module.name` with a fake that records each call's (args, kwargs) and returns `returns`."""
    calls = []
    monkeypatch.setattr(module, name, lambda *args, **kwargs: calls.append((args, kwargs)) or returns)
    return calls


class NoLines:
    def lines(self):
        return []


# The cluster options, none at its default, each a value no other option of these commands is given.
CLUSTER_ARGS = ["--address", "auto", "--workers", "3", "--device", "cpu", "--cpus-per-worker", "0.25",
                "--gpu-wait", "11", "--stall-timeout", "30"]
CLUSTER = ClusterConfig(address="auto", workers=3, device="cpu", cpus_per_worker=0.25, gpu_wait=11.0,
                        stall_timeout=30.0)   # the rest (in_flight, num_cpus, ...) have no option: defaults

# The on/off options of `run`, three times: each first off its default, and then so that no two options take the
# same values in all three runs (a swap of two of them, or one option read for another, changes one run's config).
# --fp16 with --no-bf16 (an explicit --bf16 beside it is refused: `test_fp16_takes_bf16s_place`).
SWITCHES = [dict(bf16=False, fp16=True, channels_last=False, compile=True, cudnn_benchmark=False,
                 fold_batchnorm=True),
            dict(bf16=True, fp16=False, channels_last=False, compile=False, cudnn_benchmark=True,
                 fold_batchnorm=True),
            dict(bf16=False, fp16=True, channels_last=True, compile=False, cudnn_benchmark=True,
                 fold_batchnorm=False)]


def switch_args(switches: dict) -> list[str]:
    """{"channels_last": False, ...} -> ["--no-channels-last", ...]"""
    return [f"--{'' if on else 'no-'}{field.replace('_', '-')}" for field, on in switches.items()]


@pytest.mark.parametrize("switches", SWITCHES)
def test_every_run_option_reaches_the_sweep_config(monkeypatch, tmp_path, switches):
    import sweep.cli as cli
    from jobs.render import TrajectoryOptions
    from sweep.driver import SweepConfig, SweepSummary
    store = str(tmp_path / "s")
    calls = recorded_calls(monkeypatch, cli, "run_sweep", SweepSummary(store, 1, 1, 0, (), 1.0, 3, "cpu", 0, False))
    result = invoke("run", "--store", store, "--model", "digits", "--weights", "random", "--jobs", "octave,addition",
                    "--classes", "0-4", "--pairs", "1+2", "--interpolate-pairs", "3+4", "--variants", "merge",
                    "--images", "a.png", "--images", "noise:2", "--layers", "block2", "--layers", "block3:0",
                    "--seeds", "2", "--schedule", "tiny", "--job-schedule", "dream=digits", "--batch-size", "6",
                    "--max-attempts", "5", *switch_args(switches), "--trajectory", "every:3,snapshots:6",
                    "--lease-timeout", "7.5", *CLUSTER_ARGS)
    assert result.exit_code == 0, result.output
    (((config,), kwargs),) = calls
    assert kwargs == {}
    assert config == SweepConfig(
        store=store, model="digits", weights="random", jobs="octave,addition", classes="0-4", pairs="1+2",
        interpolate_pairs="3+4", variants="merge", images=("a.png", "noise:2"), layers=("block2", "block3:0"),
        seeds=2, schedule="tiny", job_schedules=("dream=digits",), batch_size=6, max_attempts=5,
        trajectory=TrajectoryOptions(every=3, snapshots=6), lease_timeout=7.5, cluster=CLUSTER, **switches)


def test_fp16_takes_bf16s_place_and_an_explicit_bf16_beside_it_is_refused(monkeypatch, tmp_path):
    """A bare `--fp16` turns the default bf16 off (the config says which autocast the run asked for, as the
    manifest's runs record it); `--bf16 --fp16` asks for two autocasts and is refused before anything runs."""
    import sweep.cli as cli
    from sweep.driver import SweepSummary
    store = str(tmp_path / "s")
    calls = recorded_calls(monkeypatch, cli, "run_sweep", SweepSummary(store, 1, 1, 0, (), 1.0, 1, "cpu", 0, False))
    for args, expected in ((["--fp16"], (False, True)), ([], (True, False)), (["--no-bf16"], (False, False)),
                           (["--fp16", "--no-bf16"], (False, True)), (["--bf16", "--no-fp16"], (True, False))):
        result = invoke("run", "--store", store, "--model", "digits", *args)
        assert result.exit_code == 0, result.output
        (((config,), _),) = calls
        assert (config.bf16, config.fp16) == expected, args
        calls.clear()
    for args in (["--bf16", "--fp16"], ["--fp16", "--bf16"], ["--bf16", "--fp16", "--dry-run"]):
        refused = invoke("run", "--store", store, "--model", "digits", *args)
        assert refused.exit_code == 2 and refused.output.startswith(
            "Error: --bf16 and --fp16 ask for two autocasts: choose one"), refused.output
    assert not calls and not (tmp_path / "s").exists()


def test_every_score_option_reaches_the_score_config(monkeypatch):
    import sweep.cli as cli
    from sweep.score import ScoreConfig, ScoreSummary
    calls = recorded_calls(monkeypatch, cli, "run_score", ScoreSummary("s", "digits-resnet.random", 8, 8, 0, 1.0))
    result = invoke("score", "--store", "s", "--model", "digits-resnet", "--weights", "random", "--jobs", "octave",
                    "--batch-size", "9", *CLUSTER_ARGS)
    assert result.exit_code == 0, result.output
    assert calls == [((ScoreConfig(store="s", model="digits-resnet", weights="random", jobs="octave", batch_size=9,
                                   cluster=CLUSTER),), {})]


def test_every_directions_option_reaches_run_directions(monkeypatch, tmp_path):
    import analysis.directions
    sweep_fakes.build_store(tmp_path / "s", classes="0-1", jobs="octave")
    calls = recorded_calls(monkeypatch, analysis.directions, "run_directions", NoLines())
    result = invoke("directions", "--store", str(tmp_path / "s"), "--groups", "g.csv", "--start", "octave:-:1:-1:0",
                    "--components", "7", "--out", "figs", "--method", "bottleneck", "--jobs", "octave, dream")
    assert result.exit_code == 0, result.output
    ((args, kwargs),) = calls
    assert [type(args[0]), args[0].uri, *args[1:]] == [Store, str(tmp_path / "s"), "g.csv"]
    assert kwargs == dict(start="octave:-:1:-1:0", n_components=7, out="figs", method="bottleneck",
                          jobs=("octave", "dream"))


def test_directions_refuses_jobs_given_empty_instead_of_taking_the_default(monkeypatch, small_store):
    import analysis.directions
    calls = recorded_calls(monkeypatch, analysis.directions, "run_directions", NoLines())
    for empty in ("", " , "):
        result = invoke("directions", "--store", str(small_store), "--groups", "g.csv", "--jobs", empty)
        assert result.exit_code == 2 and result.output.startswith(f"Error: no job given (--jobs {empty!r})")
    assert not calls


def test_directions_refuses_an_empty_entry_of_jobs(monkeypatch, small_store):
    """`--jobs octave,,transfigure` dropped the empty entry (a typo, maybe of a job meant): refused in one line as
    `sweep run --classes 1,,2` is."""
    import analysis.directions
    calls = recorded_calls(monkeypatch, analysis.directions, "run_directions", NoLines())
    for typed in ("octave,,transfigure", "octave,"):
        result = invoke("directions", "--store", str(small_store), "--groups", "g.csv", "--jobs", typed)
        assert result.exit_code == 2 and result.output.strip() == f"Error: empty entry in --jobs {typed!r}"
    assert not calls


def test_every_analyze_option_reaches_the_feature_config_and_the_analysis(monkeypatch, tmp_path):
    import sweep.cli as cli
    import sweep.features
    from sweep.features import FeatureConfig, FeatureSummary
    features = recorded_calls(monkeypatch, sweep.features, "run_features",
                              FeatureSummary("features.parquet", 2, "block3", (4, 0), "stored", (40,)))
    analysed = []
    monkeypatch.setattr(cli, "analysis_functions", lambda: (
        lambda store, metric, margin_share, graph_ranges: analysed.append((store.uri, metric, margin_share,
                                                                           graph_ranges)) or NoLines(), None))
    sweep_fakes.build_store(tmp_path / "s", classes="0-1", jobs="octave")
    result = invoke("analyze", "--store", str(tmp_path / "s"), "--metric", "euclidean", "--features", "block3:4,0",
                    "--weights", "random", "--feature-size", "stored", "--margin-share", "0.25",
                    "--graph-ranges", "1-1, 0-0", *CLUSTER_ARGS)
    assert result.exit_code == 0, result.output
    assert features == [((FeatureConfig(store=str(tmp_path / "s"), layer="block3", maps=(4, 0), weights="random",
                                        size="stored", cluster=CLUSTER),), {})]
    assert "wrote features.parquet: 2 images, block3 maps 4,0, at the stored size (40 px)\n" in result.output
    assert analysed == [(str(tmp_path / "s"), "euclidean", 0.25, "0-0,1-1")]
    refused = invoke("analyze", "--store", str(tmp_path / "s"), "--margin-share", "0")
    assert refused.exit_code == 2 and "--margin-share" in refused.output


def test_ranges_past_the_last_class_are_refused_before_the_feature_workers_start(monkeypatch, tmp_path):
    import sweep.features
    from sweep.features import FeatureSummary
    features = recorded_calls(monkeypatch, sweep.features, "run_features",
                              FeatureSummary("features.parquet", 2, "block3", (4, 0), "stored", (40,)))
    sweep_fakes.build_store(tmp_path / "s", classes="0-1", jobs="octave")
    result = invoke("analyze", "--store", str(tmp_path / "s"), "--features", "block3:4,0", "--graph-ranges", "0-99")
    assert result.exit_code != 0 and "0-99 goes past the last class, 9" in result.output, result.output
    assert features == []


def test_the_demos_cluster_options_reach_its_sweep_and_its_scoring(monkeypatch, tmp_path):
    import sweep.cli as cli
    from sweep.driver import SweepSummary
    sweeps = recorded_calls(monkeypatch, cli, "run_sweep", SweepSummary("d", 1, 1, 0, (), 1.0, 3, "cpu", 0, False))
    scores = recorded_calls(monkeypatch, cli, "run_score", NoLines())
    monkeypatch.setattr(cli, "analysis_functions", lambda: (lambda store: NoLines(),
                                                            lambda store, out: tmp_path / "index.html"))
    result = invoke("demo", "--store", str(tmp_path / "d"), *CLUSTER_ARGS)
    assert result.exit_code == 0, result.output
    assert sweeps[0][0][0].cluster == CLUSTER and scores[0][0][0].cluster == CLUSTER
