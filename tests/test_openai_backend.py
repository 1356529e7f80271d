"""The OpenAI-compatible backend against real servers the tests start: llama.cpp's server with the Gemma 3
270M GGUF as the judge, ``transformers serve`` with the tiny VLM for images; and their faults."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest

from monitor.config import AppConfig, validate
from monitor.live.monitor import Monitor
from monitor.models import batching_engine
from monitor.offline.judge_eval import read_labelled, score_windows, smooth_by_video, window_texts
from monitor.offline.ranking import roc_auc
from pipeline.camera import NO_EXPLANATION
from pipeline.engines.openai import OpenAIClient, OpenAISettings
from pipeline.engines.split import SplitClient
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import (
    ChatPrompt,
    DescribeRequest,
    ExplainRequest,
    ModelLoadError,
    ModelRequestError,
    ModelUnavailable,
    ScoreRequest,
)
from pipeline.judge import judge_prompt
from tests.helpers.broker import free_port
from tests.helpers.cli import monitor_command
from tests.helpers.fakes import AlarmAfter, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.model_servers import ModelServer, llama_server, transformers_server
from tests.helpers.sinks import CollectingSink

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
JUDGE = AppConfig().judge
RULE = AppConfig().general_rule
ANOMALOUS = "A man stabs the cashier several times and runs away with the money."
NORMAL = "A woman waters the plants in front of the shop."


def client(server: ModelServer, **kw: object) -> OpenAIClient:
    settings = OpenAISettings.model_validate({"base_url": server.base_url, "model": "gemma3-270m", **kw})
    return OpenAIClient(settings, chat_judge=False)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = (np.argsort(np.argsort(x)).astype(float) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def llama(gguf_270m: Path, tmp_path_factory: pytest.TempPathFactory):
    server = llama_server(gguf_270m, tmp_path_factory.mktemp("llama")).start()
    yield server
    server.stop()


async def test_the_judge_on_llama_cpp_reads_answer_probabilities(llama: ModelServer) -> None:
    async with client(llama) as c:
        results = [await c.score(ScoreRequest(judge_prompt(JUDGE, [t]), JUDGE.answers)) for t in (ANOMALOUS, NORMAL)]
        text = await c.explain(ExplainRequest(ChatPrompt("", "One, two, three,"), 4))
    assert all(r.exact and r.probs.shape == (2,) and abs(r.probs.sum() - 1) < 1e-9 for r in results)
    assert results[0].probs[1] > results[1].probs[1]  # p(yes): the stabbing is the anomaly
    assert "four" in text.text.lower()
    assert c.stats.errors == 0 and c.stats.items[ScoreRequest.kind] == 2


@pytest.mark.timeout(1200)  # 1,041 texts twice: a few minutes on 2 cores
async def test_llama_cpp_ranks_the_dev_set_like_the_transformers_judge(
    llama: ModelServer, judge_dev: Path, judge_270m: Path
) -> None:
    """Same weights (the GGUF is Q4_K_M; the transformers copy is its dequantisation), same prompts, the
    scores as the live monitor makes them (the configured causal smoothing; no calibration on either)."""
    items = read_labelled(judge_dev)
    cfg = validate({"judge": {"model": str(judge_270m)}, "model": {"max_batch": 8}}, env={})
    local = batching_engine(cfg, None, TransformersModel(str(judge_270m), device="cpu"))
    async with local:
        ref = await score_windows(local, RULE, window_texts(items, 1))
    async with client(llama, max_concurrency=1) as remote:
        got = await score_windows(remote, RULE, window_texts(items, 1))
    y = np.array([it.label for it in items])
    live_ref, live_got = (smooth_by_video(items, s, JUDGE.smoothing) for s in (ref, got))
    rho, rho_raw = spearman(live_ref, live_got), spearman(ref, got)
    auc_ref, auc_got = roc_auc(y, live_ref), roc_auc(y, live_got)
    print(
        f"n={len(items)} spearman={rho:.4f} (per window, unsmoothed: {rho_raw:.4f}) roc_auc transformers="
        f"{auc_ref:.4f} llama.cpp={auc_got:.4f} (unsmoothed {roc_auc(y, ref):.4f} / {roc_auc(y, got):.4f})"
    )
    assert rho >= 0.95
    assert abs(auc_ref - auc_got) <= 0.02 and abs(roc_auc(y, ref) - roc_auc(y, got)) <= 0.02


async def test_start_up_check_names_the_url_and_what_is_wrong(llama: ModelServer) -> None:
    wrong_model = OpenAIClient(OpenAISettings(base_url=llama.base_url, model="gemma-9-900b"), chat_judge=False)
    with pytest.raises(ModelLoadError, match=rf"{llama.base_url} serves gemma3-270m, not 'gemma-9-900b'"):
        await wrong_model.__aenter__()
    wrong_path = OpenAIClient(OpenAISettings(base_url=f"http://127.0.0.1:{llama.port}/v2", model="gemma3-270m"))
    with pytest.raises(ModelLoadError, match=r"/v2/models does not exist.*API root"):
        await wrong_path.__aenter__()


async def test_a_server_that_answers_with_errors_fails_only_those_requests(
    gguf_270m: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A context too small for the judge prompt: llama.cpp refuses each request; nothing retries for ever."""
    with llama_server(gguf_270m, tmp_path, n_ctx=128) as small:
        async with client(small) as c:
            for _ in range(3):
                with pytest.raises(ModelRequestError, match=r"answered HTTP 4\d\d"):
                    await c.score(ScoreRequest(judge_prompt(JUDGE, [ANOMALOUS]), JUDGE.answers))
            short = await c.score(ScoreRequest(ChatPrompt("", "Is fire dangerous? Answer:"), (" no", " yes")))
    assert c.stats.errors == 3 and c.available and short.exact  # errors are answers, not an outage
    assert not messages(caplog, "unavailable")


async def test_a_server_not_running_at_start_is_waited_for(
    gguf_270m: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    server = llama_server(gguf_270m, tmp_path, port=port)
    c = client(server, retries=0, timeout_s=5)
    async with c:  # no server yet: an outage, not a failure to start
        assert not c.available
        for _ in range(5):
            with pytest.raises(ModelUnavailable):
                await c.score(ScoreRequest(judge_prompt(JUDGE, [NORMAL]), JUDGE.answers))
        server.start()
        try:
            for _ in range(200):  # it probes the server by itself and comes back
                try:
                    result = await c.score(ScoreRequest(judge_prompt(JUDGE, [NORMAL]), JUDGE.answers))
                    break
                except ModelUnavailable:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the client never came back")
        finally:
            server.stop()
    assert result.exact and c.available and c.stats.errors >= 5
    assert len(messages(caplog, "unavailable (connection refused)")) == 1
    assert len(messages(caplog, "answers again after")) == 1


async def test_a_server_too_slow_for_the_timeout_is_slow_not_down(
    llama: ModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Answers that do not come in time fail those requests; the server is loaded, not down: no outage."""
    c = client(llama, timeout_s=0.3, retries=0)
    async with c:
        for _ in range(4):
            with pytest.raises(ModelUnavailable, match=r"no answer within 0\.3 s"):
                await c.explain(ExplainRequest(ChatPrompt("", "Tell a long story:"), 256))
        assert c.available  # still asked, not failed at once as a server that is down would be
    assert not messages(caplog, "unavailable")


async def test_the_client_asks_llama_cpp_how_many_requests_it_serves(
    llama: ModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with client(llama) as c:  # max_concurrency unset: the server's parallel slots
        assert c.concurrency == 1
    assert messages(caplog, "1 requests at a time (its parallel slots)")
    async with client(llama, max_concurrency=3) as c:  # configured: as configured
        assert c.concurrency == 3


def test_eval_judge_on_a_loaded_server_goes_on(llama: ModelServer, tmp_path: Path) -> None:
    """Far more requests than the server's one slot, each with a short timeout: windows that time out are
    asked again; the evaluation ends with its figures (and says how many windows failed, if any)."""
    labelled = tmp_path / "few.jsonl"
    texts = [ANOMALOUS, NORMAL, "A car parks.", "Two men fight on the floor."]
    labelled.write_text(
        "\n".join(
            json.dumps(
                {"video": f"v{i // 6}", "start": i, "end": i + 1, "text": texts[i % 4], "label": i % 4 in (0, 3)}
            )
            for i in range(36)
        )
        .replace("true", "1")
        .replace("false", "0")
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[model]\nbackend = "openai"\n[model.openai]\nbase_url = "{llama.base_url}"\nmodel = "gemma3-270m"\n'
        'timeout_s = 1.0\nretries = 0\nmax_concurrency = 32\n[judge]\nchat_template = "never"\n'
    )
    done = subprocess.run(
        monitor_command("eval-judge", labelled, "--config", cfg), cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert "a bug" not in done.stderr and "roc_auc=" in done.stdout, (done.stdout, done.stderr[-2000:])
    if done.returncode == 1:
        assert "windows were not judged" in done.stdout


async def test_killed_mid_run_and_restarted_the_monitor_goes_on(
    gguf_270m: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Descriptions in process, the judge on llama.cpp; the server is killed as the first event goes out
    and started again a little later. The event is not held back: its explanation is marked missing."""
    server = llama_server(gguf_270m, tmp_path / "srv", port=free_port()).start()
    clip = make_clip(tmp_path / "c.mp4", seconds=3, fps=10)
    cfg = validate(
        {
            "cameras": [{"name": "cam", "url": str(clip), "realtime": True, "loop": True}],
            "sampling": {"every_n_frames": 5},
            "windows": {"size": 1, "stride": 1},
            "alerting": {"threshold": 0.01, "hysteresis": 0.0, "cooldown_s": 0},
            "judge": {"cache_size": 0},
        },
        env={},
    )
    restarted = asyncio.Event()

    class KillOnFirstEvent(CollectingSink):
        async def handle(self, record: object) -> None:
            await super().handle(record)
            if getattr(record, "type", None) == "new" and server.proc is not None and not restarted.is_set():
                server.stop()

                async def restart() -> None:
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(server.start)
                    restarted.set()

                asyncio.get_running_loop().create_task(restart())

    sink = KillOnFirstEvent()
    judge = OpenAIClient(
        OpenAISettings(base_url=server.base_url, model="gemma3-270m", timeout_s=5, retries=1), chat_judge=False
    )
    models = SplitClient(fake_engine(AlarmAfter(), cfg), judge)
    stop = asyncio.Event()
    run = asyncio.create_task(Monitor(cfg, models=models, sinks=[sink]).run(stop))
    try:
        await asyncio.wait_for(restarted.wait(), 60)
        before = len(sink.scores)
        for _ in range(300):
            await asyncio.sleep(0.1)
            if len(sink.scores) > before + 2:
                break
        stop.set()
        summary = await asyncio.wait_for(run, 30)
    finally:
        server.stop()
    assert not summary.crashed
    assert len(sink.scores) > before + 2  # scoring came back by itself
    explanations = [e.after.explanation for e in sink.events if e.type == "update" and e.after.explanation]
    assert explanations and explanations[0].startswith(NO_EXPLANATION)
    assert len(messages(caplog, "unavailable (connection refused); its requests fail")) == 1  # one outage, once
    assert len(messages(caplog, "judging a window failed")) <= 2  # the stage: a line per streak, not per window
    assert judge.stats.errors >= 1


@pytest.fixture(scope="module")
def vlm_server(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory):
    server = transformers_server(tiny_vlm, tmp_path_factory.mktemp("tserve")).start(timeout=180)
    yield server
    server.stop()


async def test_transformers_serve_describes_frames(vlm_server: ModelServer, caplog: pytest.LogCaptureFixture) -> None:
    settings = OpenAISettings(base_url=vlm_server.base_url, model=str(Path(vlm_server.command[2])))
    image = np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    async with OpenAIClient(settings) as c:
        out = await c.describe(DescribeRequest(image, "Describe the frame.", 8))
        # this server gives no log-probabilities: the judge's one-token answer, flagged, logged once
        scores = [await c.score(ScoreRequest(judge_prompt(JUDGE, [t]), JUDGE.answers)) for t in (ANOMALOUS, NORMAL)]
    assert isinstance(out.text, str) and out.text
    assert all(not s.exact and sorted(s.probs.tolist()) == [0.0, 1.0] for s in scores)
    assert len(messages(caplog, "one-token answer (0 or 1), flagged exact=false")) == 1


def test_monitor_run_through_transformers_serve(vlm_server: ModelServer, tmp_path: Path, judge_270m: Path) -> None:
    """``monitor run`` end to end: frames described by the server, windows judged in process."""
    clip = make_clip(tmp_path / "c.mp4", seconds=2, fps=10)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[model]
backend = "openai"
max_new_tokens = 8
[model.openai]
base_url = "{vlm_server.base_url}"
model = "{vlm_server.command[2]}"
[judge]
backend = "transformers"
model = "{judge_270m}"
[store]
enabled = false
[[cameras]]
name = "door"
url = "{clip}"
[cameras.sampling]
every_n_frames = 5
""")
    out = tmp_path / "out"
    r = subprocess.run(
        monitor_command("run", "--config", cfg, "--output", out),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    descriptions = [x for x in lines if x["kind"] == "description"]
    scores = [x for x in lines if x["kind"] == "score"]
    assert len(descriptions) == 4 and all(d["text"] for d in descriptions)
    assert scores and all(s["exact"] for s in scores)  # the in-process judge reads probabilities
    assert f"model server {vlm_server.base_url} serves" in r.stderr


def test_calibration_needs_an_in_process_judge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from monitor.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[model]\nbackend = "openai"\n[model.openai]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        f'[judge]\ncalibration = "{ROOT / "calibration" / "gemma3-270m.json"}"\n'
    )
    assert main(["check-config", str(cfg)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {cfg}: judge.calibration: a calibration reads the judge's hidden states")


def test_logging_never_shows_the_api_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = OpenAIClient(
        OpenAISettings(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="K"), api_key="sk-very-secret"
    )

    async def go() -> None:
        async with c:
            with pytest.raises(ModelUnavailable):
                await c.score(ScoreRequest(ChatPrompt("", "x"), ("no", "yes")))

    asyncio.run(go())
    assert caplog.records and not any("sk-very-secret" in r.getMessage() for r in caplog.records)
