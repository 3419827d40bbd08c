"""The waypoint-planner expert of PointMaze (``qbc/PointMaze_Medium-v3``): shortest routes on the
maze grid, ties broken at random per episode, and a PD controller to the next waypoint.

The plan: a breadth-first search from the goal's cell over the free cells (4-neighbours) gives
each cell its distance to the goal. From the ball's cell the next waypoint is the centre of a
neighbour one step closer; where several are (equally short routes split there), one is chosen
by a hash (SplitMix64) of the goal's float32 bits, the cell and the expert's ``seed``. The goal
is a per-episode constant of the observation (a cell centre plus uniform noise drawn from the
episode seed), so the choice is random per episode but a pure function of the observation: the
expert needs no state, restarts anywhere, and every rollout coupled on a seed (the expert, the
quantized expert, DAgger's labels) takes the same route, as the detour expert does. The data are
multimodal by construction, as D4RL's maze data were (a planner with random tie-breaking).
In the goal's cell the waypoint is the goal itself.

The control: a force ``u = kp (waypoint - position) - kd velocity``, clipped to the action
bounds [-1, 1] (the ball is force-actuated; its speed is clipped at 5 m/s by the env).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from qbc.agents.base import Expert
from qbc.envs.robotics import goal_space, observation_fields
from qbc.errors import InvalidValueError

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
#: The four neighbours of a cell, (row, column) offsets.
_STEPS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])


def splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser of uint64 values (any shape): a bijective, well-mixed hash."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def goal_distances(free: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """(rows, cols) number of moves from each free cell to ``goal`` (4-neighbours, breadth-first
    search over ``free`` (rows, cols) bool); -1 for walls and cells that cannot reach it."""
    dist = np.full(free.shape, -1, dtype=np.int64)
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in _STEPS:
            nr, nc = r + dr, c + dc
            if 0 <= nr < free.shape[0] and 0 <= nc < free.shape[1] and free[nr, nc] \
                    and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def tie_key(goal: np.ndarray, cells: np.ndarray, seed: int) -> np.ndarray:
    """(B,) uint64 hash of each goal's float32 bits (B, 2), cell (B, 2) and ``seed``: the
    per-episode coin that picks among equally short next steps."""
    bits = np.asarray(goal, dtype=np.float32).view(np.uint32).astype(np.uint64)
    cell = np.asarray(cells, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = splitmix64(bits[:, 0] ^ (bits[:, 1] << np.uint64(32)))
        z = splitmix64(z ^ (cell[:, 0] * _GOLDEN) ^ (cell[:, 1] << np.uint64(16)))
        return splitmix64(z ^ np.uint64(seed))


class MazePlannerExpert(Expert):
    """Shortest routes with random tie-breaking and a PD controller; see the module docstring.

    Args:
        kp: proportional gain (action per m of distance to the waypoint).
        kd: damping gain (action per m/s of velocity).
    """

    name = "maze-planner"

    def __init__(self, info: dict[str, Any], kp: float = 10.0, kd: float = 1.0,
                 noise_std: float = 0.0, seed: int = 0):
        params = {"kp": float(kp), "kd": float(kd)}
        super().__init__(info, params, noise_std=noise_std, seed=seed)
        for key, value in params.items():
            if not (np.isfinite(value) and value >= 0):
                raise InvalidValueError(f"maze-planner expert {key} must be >= 0, got {value}")
        task = info.get("task")
        maze = getattr(task, "maze", None)
        if maze is None or info["act_dim"] != 2:
            raise InvalidValueError("the maze-planner expert acts on qbc/PointMaze_Medium-v3 "
                                    "(flattened PointMaze observations)")
        fields = observation_fields(goal_space(task))
        self.pos, self.vel = fields["observation"][:2], fields["observation"][2:4]
        self.goal = fields["desired_goal"]
        self.free = np.array([[cell != 1 for cell in row] for row in maze.maze_map])
        self.scale = float(maze.maze_size_scaling)
        self.centre = np.array([maze.x_map_center, maze.y_map_center], dtype=np.float64)
        self.kp, self.kd, self.seed = params["kp"], params["kd"], int(seed)
        self._distances: dict[tuple[int, int], np.ndarray] = {}

    def cells(self, xy: np.ndarray) -> np.ndarray:
        """(B, 2) positions (m) -> (B, 2) int (row, column) of their cells, clipped to the map."""
        col = np.floor((xy[:, 0] + self.centre[0]) / self.scale)
        row = np.floor((self.centre[1] - xy[:, 1]) / self.scale)
        rc = np.stack([row, col], axis=1).astype(np.int64)
        return np.clip(rc, 0, np.array(self.free.shape) - 1)

    def cell_centres(self, rc: np.ndarray) -> np.ndarray:
        """(B, 2) (row, column) -> (B, 2) the cells' centres (m)."""
        x = (rc[:, 1] + 0.5) * self.scale - self.centre[0]
        y = self.centre[1] - (rc[:, 0] + 0.5) * self.scale
        return np.stack([x, y], axis=1)

    def distances(self, goal_cell: tuple[int, int]) -> np.ndarray:
        """:func:`goal_distances` to ``goal_cell``, computed once per goal cell."""
        if goal_cell not in self._distances:
            self._distances[goal_cell] = goal_distances(self.free, goal_cell)
        return self._distances[goal_cell]

    def waypoints(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """(B, 2) the next waypoint (m) of each ball at ``pos`` (B, 2) heading to ``goal``."""
        here, there = self.cells(pos), self.cells(goal)
        keys = tie_key(goal, here, self.seed)
        out = goal.astype(np.float64).copy()
        for b in range(len(pos)):
            dist = self.distances((int(there[b, 0]), int(there[b, 1])))
            r, c = here[b]
            if dist[r, c] <= 0:  # in the goal's cell (or walled off from it): the goal itself
                continue
            nxt = here[b] + _STEPS
            ok = [(0 <= i < dist.shape[0] and 0 <= j < dist.shape[1]
                   and dist[i, j] == dist[r, c] - 1) for i, j in nxt]
            options = nxt[np.flatnonzero(ok)]
            out[b] = self.cell_centres(options[int(keys[b] % np.uint64(len(options)))][None])[0]
        return out

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        pos, vel, goal = obs[:, self.pos], obs[:, self.vel], obs[:, self.goal]
        return self.kp * (self.waypoints(pos, goal) - pos) - self.kd * vel
