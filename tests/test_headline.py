"""A layer's headline: the same words on the dashboard, in the headless progress line, the text report and
report.json; and where the whole-run verdict hides what happened over time, the headline says both."""

import json
import re
from types import SimpleNamespace

import numpy as np
from test_tui_sizes import show, twelve_minutes  # noqa: F401 (a fixture)
from test_windows import RATE, stream

from ttt_tui.analysis.diagnosis import diagnose
from ttt_tui.analysis.headline import headline, over_time
from ttt_tui.analysis.windows import layer_windows
from ttt_tui.record.runlog import read_run, run_info
from ttt_tui.record.store import LossStore
from ttt_tui.report import write_report
from ttt_tui.run.engine import EngineStatus
from ttt_tui.run.session import progress_line


def words_of(data):
    store = LossStore([0], RATE)
    store.extend({0: data})
    verdict, fs = diagnose(store.summary(0))
    lw = layer_windows(data, RATE)
    return verdict, headline(verdict, fs, lw), over_time(verdict, lw)


def test_learning_that_stops_is_healthy_overall_and_not_learning_since():
    rng = np.random.default_rng(3)
    data = np.concatenate([stream(300, rng), stream(900, rng, improvement=0.0)])  # 5 min learning, 15 min not
    verdict, words, story = words_of(data)
    # the whole-run mean improvement is 0.02: the verdict alone does not say that learning stopped
    assert verdict != "NOT_LEARNING"
    assert story["state"] == "NOT_LEARNING" and story["until"] is None
    assert abs(story["since"] - 300) <= 30 and abs(story["share"] - 0.75) <= 0.03
    first = words.split(" overall")[0]
    assert first in (verdict, f"{verdict} (!)")
    m = re.fullmatch(rf"{re.escape(first)} overall · NOT_LEARNING (\d+) % of the audio, since (\d\d):(\d\d)", words)
    assert m, words
    assert int(m[1]) == round(100 * story["share"]) and abs(int(m[2]) * 60 + int(m[3]) - 300) <= 30


def test_learning_that_starts_late_says_until_when_it_did_not():
    """The regime now agrees with the verdict, but another one covers most of the audio."""
    rng = np.random.default_rng(4)
    data = np.concatenate([stream(900, rng, improvement=0.0), stream(300, rng, improvement=0.3)])
    verdict, words, story = words_of(data)
    assert verdict != "NOT_LEARNING" and story["state"] == "NOT_LEARNING" and story["since"] is None
    assert abs(story["until"] - 900) <= 30
    first = words.split(" overall")[0]
    assert first in (verdict, f"{verdict} (!)")
    want = rf"{re.escape(first)} overall · NOT_LEARNING 7\d % of the audio, until 1[45]:\d\d"
    assert re.fullmatch(want, words), words


def test_a_steady_layer_gets_its_verdict_alone():
    rng = np.random.default_rng(5)
    assert words_of(stream(600, rng))[1] == "HEALTHY"
    frozen = stream(600, rng)
    frozen[:, 2] = frozen[:, 1]  # the update changes nothing (an inner learning rate of 0)
    assert words_of(frozen)[1] == "NOT_LEARNING"
    # 10-50 % ordering violations: HEALTHY with a warning, and the regime ELEVATED_VIOLATIONS agrees with it
    verdict, words, story = words_of(stream(600, rng, improvement=0.02, gain=0.02, noise=0.03))
    assert verdict == "HEALTHY" and words == "HEALTHY (!)" and story is None


def test_the_same_words_on_every_screen_and_in_every_file(twelve_minutes, tmp_path):  # noqa: F811
    """Layer 0 of the twelve-minute run learns for 200 s and stops: its words are the same on the dashboard,
    in the headless progress line, in the text report and in report.json."""
    run = read_run(twelve_minutes)
    verdict, fs = diagnose(run.store.summary(0))
    want = headline(verdict, fs, layer_windows(run.store.view(0)[1], RATE))
    assert want == "NOT_ADAPTING overall · NOT_LEARNING 71 % of the audio, since 03:30", want

    seen = show(twelve_minutes, (250, 60), tmp_path)
    assert seen["counters"][0].startswith(f" {want} "), seen["counters"][0]

    session = SimpleNamespace(
        engine=SimpleNamespace(status=EngineStatus(state="finished", audio_s=720.0, compute_s=10.0)),
        source=SimpleNamespace(duration_s=720.0),
        store=run.store,
        settings=SimpleNamespace(realtime=False, mic=False, window=30.0),
        progress_windows={},
    )
    line = progress_line(session)
    assert f"| L0 {want} viol " in line, line

    out = tmp_path / "report"
    out.mkdir()
    write_report(out, run.store, run_info(run), plots=False)
    assert f"   Verdict: {want}\n" in (out / "ttt_diagnostic_report.txt").read_text()
    doc = json.loads((out / "report.json").read_text())
    assert doc["layers"]["0"]["headline"] == want and doc["layers"]["0"]["verdict"] == "NOT_ADAPTING"
    assert doc["layers"]["0"]["over_time"]["state"] == "NOT_LEARNING"
    assert doc["layers"]["1"]["headline"] == "HEALTHY" and doc["layers"]["1"]["over_time"] is None


def test_compare_and_eval_say_the_same_words(twelve_minutes, tmp_path):  # noqa: F811
    import shutil

    from ttt_tui.evaluation.aggregate import merge, render_text
    from ttt_tui.evaluation.inputs import INPUTS_NAME, run_name
    from ttt_tui.report.compare import compare_runs
    from ttt_tui.report.compare import render_text as compare_text

    run = read_run(twelve_minutes)
    verdict, fs = diagnose(run.store.summary(0))
    want = headline(verdict, fs, layer_windows(run.store.view(0)[1], RATE))

    cmp = compare_runs([twelve_minutes, twelve_minutes])
    assert [r["layers"]["0"]["headline"] for r in cmp["runs"]] == [want, want]
    assert compare_text({k: v for k, v in cmp.items() if not k.startswith("_")}).count(want) == 2

    ev = tmp_path / "eval"
    shutil.copytree(twelve_minutes, ev / "runs" / run_name(0, tmp_path / "twelve.wav"))
    (ev / INPUTS_NAME).write_text(json.dumps({"files": [str(tmp_path / "twelve.wav")]}))
    doc = merge([ev])
    assert doc["runs"][0]["layers"]["0"]["headline"] == want
    assert f"layer 0: {want}" in render_text({k: v for k, v in doc.items() if not k.startswith("_")})
