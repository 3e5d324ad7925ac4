"""Constant-velocity Kalman filter for oriented boxes, batched over tracks (numpy, no loop per track).

State ``x [T, 8]``: ``[cx, cy, vx, vy, l, w, a, omega]`` (pixels, pixels per source frame, radians, radians per
frame). ``a`` is the direction of the ``l`` side and is *unwrapped*: it lives on the real line, never reduced
to le90, so a box turning through the le90 boundary moves smoothly; outputs are normalized back to le90 by the
caller. Measurement ``z [T, 5]``: ``[cx, cy, l, w, a]``, first aligned with the track by
:func:`align_measurements` (the equivalent angle nearest the track's, sides swapped with it for near-square
boxes). Covariances ``P [T, 8, 8]``.

Noise model (every scale a :class:`~obbdet.tracking.options.TrackerOptions` field): the centre and the angle
follow white-noise acceleration models (``[position, velocity]`` blocks); the sides are a random walk. Position
and size noises scale with the box length, so one set of defaults fits vehicles of any pixel size. The angle's
acceleration noise grows with the filtered speed: a parked vehicle cannot turn, so its angle is averaged over
many frames (detector jitter strongly damped), while a moving one follows turns.
"""
from __future__ import annotations

import math

import numpy as np

STATE_DIM = 8
MEAS_DIM = 5
CX, CY, VX, VY, L, W, A, OMEGA = range(STATE_DIM)
MEAS_INDEX = np.array([CX, CY, L, W, A])  # state rows the measurement observes (H is a selection)


def align_measurements(z: np.ndarray, track_angle: np.ndarray, track_ratio: np.ndarray,
                       square_ratio: float) -> np.ndarray:
    """Measurements ``z [K, 5]`` ``[cx, cy, l, w, a]`` (le90) brought to the representation nearest tracks whose
    angles are ``track_angle [K]`` (unwrapped radians) and side ratios ``track_ratio [K]`` (``w / l``).

    Every box is the same rectangle at ``a + k*pi``; a near-square one (its ``w / l`` or its track's above
    ``square_ratio``) is also nearly the same at ``a + k*pi/2`` with ``l`` and ``w`` swapped for odd ``k``, and
    a detector may report either. The nearest equivalent is taken, so the filter never sees a 180 (or 90)
    degree jump. Returns a new array.
    """
    z = np.array(z, dtype=np.float64, copy=True)
    if not len(z):
        return z
    square = (z[:, 3] / np.maximum(z[:, 2], 1e-12) > square_ratio) | (track_ratio > square_ratio)
    period = np.where(square, math.pi / 2, math.pi)
    k = np.round((track_angle - z[:, 4]) / period)
    z[:, 4] += k * period
    swap = square & (np.abs(k) % 2 == 1)
    z[swap, 2], z[swap, 3] = z[swap, 3].copy(), z[swap, 2].copy()
    return z


class BoxKalman:
    """Batched predict / update for oriented boxes; ``opts`` is a TrackerOptions (noise scales)."""

    def __init__(self, opts):
        self.opts = opts

    # -- noise -------------------------------------------------------------------------------------

    def measurement_std(self, length: np.ndarray) -> np.ndarray:
        """Measurement standard deviations ``[K, 5]`` for boxes of long side ``length [K]``."""
        o = self.opts
        std = np.empty((len(length), MEAS_DIM))
        std[:, 0] = std[:, 1] = o.position_std * length
        std[:, 2] = std[:, 3] = o.size_std * length
        std[:, 4] = math.radians(o.angle_std_deg)
        return std

    def _process_noise(self, x: np.ndarray, dt: float) -> np.ndarray:
        """Process noise ``Q [T, 8, 8]`` over ``dt`` frames (discrete white-noise acceleration blocks)."""
        o = self.opts
        length = np.maximum(x[:, L], 1e-6)
        speed = np.hypot(x[:, VX], x[:, VY])
        block = np.array([[dt ** 4 / 4, dt ** 3 / 2], [dt ** 3 / 2, dt ** 2]])  # [position, velocity]
        accel = (o.accel_std * length) ** 2
        turn = np.radians(o.angle_accel_std_deg + o.angle_accel_std_deg_per_speed * speed) ** 2
        q = np.zeros((len(x), STATE_DIM, STATE_DIM))
        for pos, vel in ((CX, VX), (CY, VY)):
            q[:, [[pos], [vel]], [pos, vel]] = accel[:, None, None] * block
        q[:, [[A], [OMEGA]], [A, OMEGA]] = turn[:, None, None] * block
        q[:, L, L] = q[:, W, W] = (o.size_change_std * length) ** 2 * dt
        return q

    # -- filter ------------------------------------------------------------------------------------

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from measurements ``z [K, 5]``: state ``[K, 8]`` (velocities 0) and covariance ``[K, 8, 8]``."""
        o = self.opts
        x = np.zeros((len(z), STATE_DIM))
        x[:, MEAS_INDEX] = z
        std = np.zeros((len(z), STATE_DIM))
        std[:, MEAS_INDEX] = self.measurement_std(z[:, 2])
        std[:, VX] = std[:, VY] = o.init_velocity_std * z[:, 2]
        std[:, OMEGA] = math.radians(o.init_angle_rate_std_deg)
        p = np.zeros((len(z), STATE_DIM, STATE_DIM))
        idx = np.arange(STATE_DIM)
        p[:, idx, idx] = std ** 2
        return x, p

    def predict(self, x: np.ndarray, p: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """States ``[T, 8]`` and covariances ``[T, 8, 8]`` ``dt`` frames ahead (new arrays)."""
        f = np.eye(STATE_DIM)
        f[CX, VX] = f[CY, VY] = f[A, OMEGA] = dt
        x_new = x @ f.T
        x_new[:, L:W + 1] = np.maximum(x_new[:, L:W + 1], 1e-3)  # sides stay positive
        p_new = f @ p @ f.T + self._process_noise(x, dt)
        return x_new, p_new

    def position_covariance(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Innovation covariance of the centre ``[T, 2, 2]`` (predicted covariance plus measurement noise)."""
        s = p[:, :2, :2].copy()
        var = (self.opts.position_std * x[:, L]) ** 2
        s[:, 0, 0] += var
        s[:, 1, 1] += var
        return s

    def update(self, x: np.ndarray, p: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct states ``[K, 8]`` / covariances ``[K, 8, 8]`` with aligned measurements ``z [K, 5]``."""
        r = self.measurement_std(z[:, 2]) ** 2
        ph = p[:, :, MEAS_INDEX]  # P H^T [K, 8, 5]
        s = ph[:, MEAS_INDEX, :].copy()  # H P H^T [K, 5, 5]
        idx = np.arange(MEAS_DIM)
        s[:, idx, idx] += r
        gain = np.linalg.solve(s, ph.transpose(0, 2, 1)).transpose(0, 2, 1)  # P H^T S^-1, S symmetric
        innovation = z - x[:, MEAS_INDEX]
        x_new = x + np.einsum("kij,kj->ki", gain, innovation)
        p_new = p - gain @ ph.transpose(0, 2, 1)
        p_new = 0.5 * (p_new + p_new.transpose(0, 2, 1))
        x_new[:, L:W + 1] = np.maximum(x_new[:, L:W + 1], 1e-3)
        return x_new, p_new
