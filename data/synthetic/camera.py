"""Pinhole RGB camera with ground-truth depth, semantics and dynamic mask.

Camera axes: x right, y down, z forward. A global shutter at the frame time;
each pixel row is one ray fan (for the moving-box caster). Depth is the
z-depth in the camera frame (float32 metres, 0 = sky/no hit).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from fuse4d.data.synthetic.config import SynthConfig
from fuse4d.data.synthetic.raycast import Fans, trace
from fuse4d.data.classes import BUILDING
from fuse4d.data.synthetic.texture import Lighting, albedo, put_rows, shade, sky


#: 256 equiprobable standard-normal quantiles: a random byte → a Gaussian sample (fast pixel noise)
_GAUSS_LUT = norm.ppf((np.arange(256) + 0.5) / 256).astype(np.float32)


class Camera:
    """Pinhole camera of ``width × height`` pixels and horizontal FOV ``hfov_deg``.

    Attributes:
        K: ``[3, 3]`` intrinsics (pixels); width, height: image size.
    """

    def __init__(self, width: int, height: int, hfov_deg: float):
        self.width, self.height = int(width), int(height)
        f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
        # OpenCV convention: pixel (i, j) has its centre at (u, v) = (i, j), so the
        # principal point of a centred sensor is (W - 1) / 2, (H - 1) / 2
        cx, cy = (width - 1) / 2, (height - 1) / 2
        self.K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
        xn = (np.arange(width) - cx) / f
        yn = (np.arange(height) - cy) / f
        # [H, W, 3] rays with z = 1, so hit t equals z-depth; each pixel row is one fan
        self.dirs_cam = np.stack(np.broadcast_arrays(xn[None, :], yn[:, None], 1.0), -1).astype(np.float32)
        norm = np.sqrt(1.0 + yn * yn)[:, None]
        zero, one = np.zeros_like(yn), np.ones_like(yn)
        self.fan_normal_cam = np.stack([zero, one, -yn], -1) / norm
        self.fan_fwd_cam = np.stack([zero, yn, one], -1) / norm
        self.fan_up_cam = np.stack([one, zero, zero], -1)
        self.fan_angle = np.arctan2(xn[None, :], norm)

    def _tone(self, light: Lighting) -> np.ndarray | None:
        """The tone curve of ``light`` (cached per lighting)."""
        if getattr(self, "_tone_key", None) is not light:
            self._tone_key, self._tone_lut = light, light.tone_lut()
        return self._tone_lut

    @classmethod
    def from_config(cls, cfg: SynthConfig) -> "Camera":
        """Camera from ``image_width``, ``image_height``, ``camera_hfov_deg``."""
        return cls(cfg.image_width, cfg.image_height, cfg.camera_hfov_deg)

    def render(self, static, actors, T_world_cam: np.ndarray, t: float, rng: np.random.Generator,
               noise_sigma: float = 0.0, dark: bool = False, light: Lighting | None = None) -> dict[str, np.ndarray]:
        """Render one frame.

        Args:
            static, actors: the world's ``StaticScene`` and ``Actors``.
            T_world_cam: ``[4, 4]`` camera pose at time ``t`` (seconds).
            rng: noise generator; noise_sigma: pixel noise σ (0-255 scale).
            dark: render a near-black, noisy image (degradation).
            light: sun, sky and exposure (None: the default lighting).

        Returns ``image [H, W, 3]`` uint8, ``depth [H, W]`` float32, ``semantics [H, W]`` uint8,
        ``dynamic [H, W]`` bool.
        """
        R, o = T_world_cam[:3, :3], T_world_cam[:3, 3]
        W, H = self.width, self.height
        dirs = self.dirs_cam @ R.T.astype(np.float32)
        fans = Fans(np.broadcast_to(o, (H, 3)), self.fan_normal_cam @ R.T, self.fan_fwd_cam @ R.T,
                    self.fan_up_cam @ R.T, dirs, self.fan_angle, np.full(H, t))
        hits = trace(static, actors, fans)
        idx = hits["idx"]
        flat_dirs = dirs.reshape(-1, 3)
        miss = np.ones(W * H, bool)
        miss[idx] = False
        sky_idx = np.flatnonzero(miss)
        rgb = np.empty((W * H, 3), np.float32)
        put_rows(rgb, sky_idx, sky(np.take(flat_dirs, sky_idx, axis=0), light))
        p = o.astype(np.float32) + hits["t"][:, None] * np.take(flat_dirs, idx, axis=0)
        style = np.take(static.lut_style, hits["lut"][hits["cls"] == BUILDING], axis=0)
        col = albedo(hits["cls"], p, hits["normal"], hits["color"], hits["paint"], style)
        put_rows(rgb, idx, shade(col, hits["normal"], light))
        img = rgb
        img *= np.float32(255.0)
        if dark:
            img = img * np.float32(0.04) + np.float32(3.0) + rng.normal(0.0, 4.0, img.shape).astype(np.float32)
        elif noise_sigma > 0:
            img += np.take(_GAUSS_LUT * np.float32(noise_sigma), rng.integers(0, 256, img.shape, dtype=np.uint8))
        img += np.float32(0.5)
        image = np.clip(img, 0, 255, out=img).astype(np.uint8).reshape(H, W, 3)
        lut = None if (dark or light is None) else self._tone(light)
        if lut is not None:  # exposure and contrast of this world's camera
            image = np.take(lut, image)
        depth = np.zeros(W * H, np.float32)
        depth[idx] = hits["t"]
        sem = np.zeros(W * H, np.uint8)
        sem[idx] = hits["cls"]
        dyn = np.zeros(W * H, bool)
        dyn[idx] = hits["dynamic"]
        return {"image": image, "depth": depth.reshape(H, W), "semantics": sem.reshape(H, W),
                "dynamic": dyn.reshape(H, W)}
