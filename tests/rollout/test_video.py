"""Rollout videos: frame count and size read back from the written files."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("imageio")

import imageio.v3 as iio  # noqa: E402

from qbc.agents import make_expert  # noqa: E402
from qbc.cli import main  # noqa: E402
from qbc.rollout.coupled import QuantizedExpert  # noqa: E402
from qbc.rollout.video import write_rollout_videos  # noqa: E402
from qbc.tokenizer import ActionTokenizer  # noqa: E402

K_PENDULUM = [[5.0, 0.0, 1.0]]


class Zero:
    def act(self, obs):
        return np.zeros((len(obs), 1), dtype=np.float32)


def _tokenizer():
    return ActionTokenizer.fit(np.linspace(-2, 2, 50)[:, None], quantizer="uniform", n_bins=4)


@pytest.mark.slow
def test_pendulum_video_has_one_frame_per_step_and_the_panel_size(tmp_path):
    pytest.importorskip("pygame")
    pytest.importorskip("imageio_ffmpeg")
    before = dict(os.environ)
    expert = make_expert("linear", "Pendulum-v1", K=K_PENDULUM)
    actors = {"expert": expert, "policy": Zero(),
              "quantized_expert": QuantizedExpert(expert, _tokenizer())}
    (path,) = write_rollout_videos("Pendulum-v1", actors, [7], 20, tmp_path)
    assert path.name == "episode_7.mp4"
    frames = iio.imread(path)
    # 21 frames (x_0 and one per step); three 320x320 panels under a 48-pixel header
    assert frames.shape == (21, 368, 960, 3)
    assert dict(os.environ) == before  # SDL's dummy driver was set only while rendering
    # the panels differ once the actions differ (expert vs zero policy)
    assert np.abs(frames[-1, 48:, :320].astype(int) - frames[-1, 48:, 320:640]).mean() > 1


@pytest.mark.slow
def test_qbc_envs_get_a_trace_and_gif_without_ffmpeg(tmp_path, monkeypatch):
    import qbc.rollout.video

    monkeypatch.setattr(qbc.rollout.video, "video_backend", lambda: "gif")
    env = "qbc/LinearUnstable-v0"
    actors = {"expert": make_expert("lqr", env),
              "policy": make_expert("linear", env, gain_scale=0.5)}
    (path,) = write_rollout_videos(env, actors, [3], 10, tmp_path)
    assert path.suffix == ".gif"
    frames = iio.imread(path)
    assert frames.shape[0] == 11 and frames.shape[1:3] == (368, 640)


@pytest.mark.slow
def test_rollout_command_writes_videos(tmp_path, capsys):
    pytest.importorskip("pygame")
    _tokenizer().save(tmp_path / "tok.json")
    out = tmp_path / "roll"
    args = ["rollout", "--env", "Pendulum-v1", "--expert", "linear", "--expert-params",
            json.dumps({"K": K_PENDULUM}), "--tokenizer", str(tmp_path / "tok.json"),
            "--episodes", "3", "--horizons", "5,10", "--no-progress", "--seed", "100"]
    assert main([*args, "--video", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["videos"]) == 1 and metrics["videos"][0].startswith("videos/episode_100.")
    assert len(iio.imread(out / metrics["videos"][0])) == 11
    assert main([*args, "--video", "4", "--out", str(tmp_path / "bad")]) == 2
    assert "--video must be between 0 and --episodes" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_env_that_cannot_render_here_falls_back_to_traces_with_one_warning(tmp_path, monkeypatch):
    """As MuJoCo does on a machine without OpenGL: rgb_array is offered but render() fails."""
    pytest.importorskip("imageio_ffmpeg")
    from gymnasium.envs.classic_control.pendulum import PendulumEnv

    from qbc.rollout.video import RenderFallbackWarning

    def no_opengl(self):
        raise RuntimeError("No OpenGL backend could be imported")

    monkeypatch.setattr(PendulumEnv, "render", no_opengl)
    expert = make_expert("linear", "Pendulum-v1", K=K_PENDULUM)
    with pytest.warns(RenderFallbackWarning, match="cannot render on this machine.*MUJOCO_GL"):
        (path,) = write_rollout_videos("Pendulum-v1", {"expert": expert, "policy": Zero()},
                                       [7], 10, tmp_path)
    frames = iio.imread(path)
    assert frames.shape[0] == 11 and frames.shape[1:3] == (368, 640)  # two 320x320 trace panels


@pytest.mark.slow
def test_mujoco_video_renders_headless_through_egl(tmp_path):
    """No display here: the video code picks EGL for MuJoCo, so the panels are MuJoCo's own
    pictures (mostly the black sky), not the trace fallback (white)."""
    pytest.importorskip("mujoco")
    pytest.importorskip("imageio_ffmpeg")
    import ctypes.util
    import warnings

    if ctypes.util.find_library("EGL") is None or os.environ.get("DISPLAY"):
        pytest.skip("needs libEGL and no X display")
    before = dict(os.environ)
    expert = make_expert("zoo:InvertedPendulum-v5", "InvertedPendulum-v5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RenderFallbackWarning would fail the test
        (path,) = write_rollout_videos("InvertedPendulum-v5", {"expert": expert, "policy": expert},
                                       [0], 5, tmp_path)
    frames = iio.imread(path)
    assert frames.shape == (6, 368, 640, 3)
    assert frames[:, 48:].mean() < 60  # dark MuJoCo scene; the trace panels are white (~240)
    assert dict(os.environ) == before


@pytest.mark.slow
def test_chunk_floor_gets_its_own_panel(tmp_path, monkeypatch):
    """The chunk floor (bound to the video's own env) is a third panel beside expert and
    policy, and plans from that env's state."""
    import qbc.rollout.video
    from qbc.chunking.execution import ChunkExecutor
    from qbc.chunking.floor import QuantizedChunkExpert, make_planner

    monkeypatch.setattr(qbc.rollout.video, "video_backend", lambda: "gif")
    env = "qbc/LinearUnstable-v0"
    expert = make_expert("lqr", env)
    floor = ChunkExecutor(QuantizedChunkExpert(make_planner(env, expert), 3), "open-loop")
    actors = {"expert": expert, "policy": make_expert("linear", env, gain_scale=0.5),
              "chunk_expert": floor}
    (path,) = write_rollout_videos(env, actors, [3], 10, tmp_path)
    frames = iio.imread(path)
    assert frames.shape[0] == 11 and frames.shape[2] == 960  # three trace panels
    assert floor.policy.planner._env is not None
    assert floor.n_chunks == 4  # plans at steps 0, 3, 6, 9
