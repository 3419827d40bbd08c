"""Rollout videos: expert, learner and quantized expert side by side, one file per episode.

Each actor plays the episode of the same seed in its own single env, in lockstep; a frame per
step (the initial state, then after each of the H steps: H + 1 frames) shows the panels side by
side under a header with the step and each actor's return and cumulative regret against the
expert (sum of the expert's rewards minus the actor's, up to that step). Panels are the env's
``rgb_array`` rendering where it has one (Gymnasium's classic control through pygame, with
SDL's dummy video driver set only while rendering; MuJoCo through EGL on a machine without a
display (:func:`headless_gl`), or through the backend ``MUJOCO_GL`` names)
and otherwise a drawn trace of the state (solid) and action (dashed) coordinates so far (the
qbc/ envs). An env that offers ``rgb_array`` but cannot render on this machine (no OpenGL
library) gets the drawn trace too, with one warning saying why. An actor whose episode ends
keeps its last panel.

MP4 through imageio's ffmpeg plugin (``pip install 'qbc[video]'``); a GIF where imageio-ffmpeg
is missing. Frame sizes are rounded up to multiples of 16 (the codec's macro blocks).

    paths = write_rollout_videos("Pendulum-v1", {"expert": e, "policy": p}, [0, 1], 200, out)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qbc.envs.make import check_env_id, make_env
from qbc.errors import InvalidValueError, QbcWarning
from qbc.infra.environ import scoped_environ

#: Panel height in pixels (rendered frames are scaled to it, keeping their aspect ratio).
PANEL_HEIGHT = 320
#: Header rows above the panels: the step line and one line per panel.
HEADER = 48
FPS = 30
#: The panels shown, in this order, when the rollout has them.
PANELS = ("expert", "policy", "quantized_expert", "quantized_chunk_expert", "chunk_expert")


@dataclass
class _Track:
    """One actor's episode so far."""

    env: Any
    obs: np.ndarray
    rewards: list[float] = field(default_factory=list)
    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    done: bool = False
    frame: np.ndarray | None = None


def video_backend() -> str:
    """'mp4' when imageio's ffmpeg plugin is installed, 'gif' with imageio alone; an error
    naming the extra when imageio is missing."""
    if importlib.util.find_spec("imageio") is None:
        raise InvalidValueError("--video needs imageio: pip install 'qbc[video]'")
    return "mp4" if importlib.util.find_spec("imageio_ffmpeg") is not None else "gif"


def renders_rgb(env_id: str) -> bool:
    """Whether the env offers ``render_mode="rgb_array"``."""
    spec = check_env_id(env_id)
    from gymnasium.envs.registration import load_env_creator

    creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) \
        else spec.entry_point
    return "rgb_array" in (getattr(creator, "metadata", None) or {}).get("render_modes", [])


def write_rollout_videos(env_id: str, actors: Mapping[str, Any], seeds: Sequence[int],
                         horizon: int, out_dir: str | Path, fps: int = FPS) -> list[Path]:
    """One video per seed in ``out_dir`` (``episode_<seed>.mp4`` or ``.gif``) of the actors
    named in :data:`PANELS` (``expert`` first: the regret reference); returns the paths."""
    names = [n for n in PANELS if n in actors]
    if "expert" not in names or len(names) < 2:
        raise InvalidValueError("a rollout video needs the expert and at least one of "
                                f"{', '.join(PANELS[1:])}")
    ext = video_backend()
    rgb = renders_rgb(env_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = out_dir / f"episode_{int(seed)}.{ext}"
        frames = episode_frames(env_id, {n: actors[n] for n in names}, int(seed), horizon, rgb)
        _write(path, frames, fps)
        paths.append(path)
    return paths


def episode_frames(env_id: str, actors: Mapping[str, Any], seed: int, horizon: int,
                   rgb: bool) -> Iterator[np.ndarray]:
    """The H + 1 composed frames (height, width, 3) uint8 of one coupled episode."""
    with ExitStack() as stack:
        stack.enter_context(scoped_environ(SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy",
                                           PYGAME_HIDE_SUPPORT_PROMPT="1", **headless_gl()))
        tracks = {}
        for name, actor in actors.items():
            env = make_env(env_id, max_episode_steps=horizon,
                           **({"render_mode": "rgb_array"} if rgb else {}))
            stack.callback(env.close)
            obs, _ = env.reset(seed=seed)
            if hasattr(actor, "reset"):
                actor.reset()
            if hasattr(actor, "bind_env"):  # the chunk floor plans from this env's state
                actor.bind_env(env)
            tracks[name] = _Track(env, np.asarray(obs), observations=[np.asarray(obs)])
        rgb = rgb and _can_render(env_id, next(iter(tracks.values())).env)
        painter = _RgbPanels() if rgb else _TracePanels(list(tracks), horizon, tracks)
        yield _compose(env_id, seed, 0, horizon, tracks, painter)
        for t in range(1, horizon + 1):
            for name, track in tracks.items():
                if not track.done:
                    _step(track, actors[name])
            yield _compose(env_id, seed, t, horizon, tracks, painter)


def headless_gl() -> dict[str, str]:
    """Without a display, MuJoCo's OpenGL through EGL (``MUJOCO_GL=egl``, and PyOpenGL on the
    same platform), which needs no X server; Gymnasium would try GLFW first, whose failure
    leaves PyOpenGL on the wrong platform. A user's own ``MUJOCO_GL`` wins (set only where
    unset, for the rendering only)."""
    import os

    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return {}
    return {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}


def _can_render(env_id: str, env: Any) -> bool:
    """Whether ``env.render()`` works here; if not (MuJoCo without an OpenGL library, say),
    one :class:`RenderFallbackWarning` naming the cause."""
    import warnings

    try:
        with warnings.catch_warnings():  # GLFW's own warnings while backends are tried
            warnings.simplefilter("ignore")
            env.render()
        return True
    except Exception as exc:  # noqa: BLE001  (OpenGL stacks raise anything: EGLError, FatalError...)
        cause = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        warnings.warn(f"{env_id} cannot render on this machine ({cause}); the video shows drawn "
                      "state/action traces instead (MuJoCo on a headless machine: install EGL "
                      "or OSMesa and set MUJOCO_GL=egl or osmesa)", RenderFallbackWarning,
                      stacklevel=3)
        return False


class RenderFallbackWarning(QbcWarning):
    """An env that offers rgb_array rendering could not render here; traces are drawn."""


def _step(track: _Track, actor: Any) -> None:
    action = np.asarray(actor.act(track.obs[None].astype(np.float32)),
                        dtype=track.env.action_space.dtype)[0]
    obs, reward, terminated, truncated, _ = track.env.step(action)
    track.obs = np.asarray(obs)
    track.rewards.append(float(reward))
    track.observations.append(track.obs)
    track.actions.append(np.asarray(action, dtype=np.float64).reshape(-1))
    track.done = bool(terminated or truncated)


class _RgbPanels:
    """Panels from the env's own rendering, scaled to :data:`PANEL_HEIGHT`."""

    def panel(self, name: str, track: _Track) -> np.ndarray:
        if not track.done or track.frame is None:
            track.frame = _scale(np.asarray(track.env.render(), dtype=np.uint8))
        return track.frame


class _TracePanels:
    """Panels drawn with matplotlib: state (solid) and action (dashed) coordinates vs step."""

    def __init__(self, names: list[str], horizon: int, tracks: Mapping[str, _Track]):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figs = {}
        for name in names:
            fig = Figure(figsize=(4.0, PANEL_HEIGHT / 80), dpi=80)
            FigureCanvasAgg(fig)  # off-screen, whatever pyplot's backend is
            ax = fig.add_subplot()
            ax.set_xlim(0, horizon)
            ax.set_xlabel("step")
            obs_dim = len(tracks[name].obs)
            act_dim = int(np.prod(tracks[name].env.action_space.shape))
            lines = ([ax.plot([], [], lw=1, label=f"x{i}")[0] for i in range(obs_dim)]
                     + [ax.plot([], [], lw=1, ls="--", label=f"u{i}")[0]
                        for i in range(act_dim)])
            ax.legend(loc="upper right", fontsize=6, ncol=2)
            fig.tight_layout()
            self.figs[name] = (fig, ax, lines, obs_dim)

    def panel(self, name: str, track: _Track) -> np.ndarray:
        if track.done and track.frame is not None:
            return track.frame
        fig, ax, lines, obs_dim = self.figs[name]
        x = np.asarray(track.observations, dtype=np.float64).reshape(len(track.observations), -1)
        u = (np.asarray(track.actions).reshape(len(track.actions), -1) if track.actions
             else np.zeros((0, len(lines) - obs_dim)))
        for i, line in enumerate(lines):
            data = x[:, i] if i < obs_dim else u[:, i - obs_dim]
            line.set_data(np.arange(len(data)), data)
        top = max(1e-3, float(np.max(np.abs(x))), float(np.max(np.abs(u), initial=0.0)))
        ax.set_ylim(-1.1 * top, 1.1 * top)
        fig.canvas.draw()
        track.frame = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        return track.frame


def _scale(frame: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = frame.shape[:2]
    width = max(1, round(w * PANEL_HEIGHT / h))
    return np.asarray(Image.fromarray(frame).resize((width, PANEL_HEIGHT), Image.BILINEAR))


def _compose(env_id: str, seed: int, t: int, horizon: int, tracks: Mapping[str, _Track],
             painter: Any) -> np.ndarray:
    """Panels side by side under the header; padded to multiples of 16."""
    from PIL import Image, ImageDraw

    panels = [painter.panel(name, track) for name, track in tracks.items()]
    width = sum(p.shape[1] for p in panels)
    size = (_ceil16(width), _ceil16(HEADER + PANEL_HEIGHT))
    canvas = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 4), f"{env_id}  seed {seed}  step {t}/{horizon}", fill=(0, 0, 0))
    expert_return = sum(tracks["expert"].rewards)
    x = 0
    for (name, track), panel in zip(tracks.items(), panels, strict=True):
        ret = sum(track.rewards)
        label = f"{name}: return {ret:.4g}"
        if name != "expert":
            label += f", regret {expert_return - ret:.4g}"
        draw.text((x + 6, 26), label, fill=(0, 0, 0) if not track.done else (160, 0, 0))
        canvas.paste(Image.fromarray(panel), (x, HEADER))
        x += panel.shape[1]
    return np.asarray(canvas)


def _ceil16(n: int) -> int:
    return -(-int(n) // 16) * 16


def _write(path: Path, frames: Iterator[np.ndarray], fps: int) -> None:
    """Stream frames to an MP4 (ffmpeg) or GIF file, written to a temp name then renamed."""
    import imageio.v2 as imageio

    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    if path.suffix == ".mp4":
        writer = imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=16,
                                    quality=7, ffmpeg_log_level="error")
    else:
        writer = imageio.get_writer(tmp, mode="I", duration=1000 / fps, loop=0)
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()
    tmp.replace(path)
