"""The fusion model's outputs in a run store: written per window, read back per window.

Names are DESIGN.md's contract (``frames/depth``, ``frames/depth_conf``,
``frames/semantics``, ``frames/dynamic``, ``lidar/semantics``, ``lidar/dynamic``,
``gates``) plus the run's own ``net/`` group: ``net/T_prev_cur [S,4,4]`` and
``net/pose_cov [S,6,6]`` (the model's relative poses, body frame),
``net/attn_tokens [S,L,P,D]`` float16 (image-patch tokens after the global
attention layers, for the camera dynamics cues) and ``net/state`` (the
recurrent state after the last committed window, so a resumed run continues
exactly where the killed one stopped).
"""

from __future__ import annotations

import numpy as np

from fuse4d.data.prediction import WindowPrediction


def write_prediction(store, start: int, wp: WindowPrediction) -> None:
    """One window's model outputs into ``store`` at frames ``[start, start + S)``."""
    for name, arr in (("frames/depth", wp.depth), ("frames/depth_conf", wp.depth_conf),
                      ("frames/semantics", wp.semantics), ("frames/dynamic", wp.dynamic)):
        if arr is not None:
            store.write_frames(name, start, arr)
    store.write_frames("gates", start, np.asarray(wp.gates, np.float32))
    store.write_frames("net/T_prev_cur", start, wp.T_prev_cur)
    store.write_frames("net/pose_cov", start, wp.pose_cov)
    if wp.point_semantics is not None:
        store.write_points("semantics", start, [np.asarray(a, np.uint8) for a in wp.point_semantics])
    if wp.point_dynamic is not None:
        store.write_points("dynamic", start, [np.asarray(a, np.float32) for a in wp.point_dynamic])
    if wp.attn_tokens is not None:  # [L, S, P, D] → per frame [S, L, P, D]
        store.write_frames("net/attn_tokens", start, np.moveaxis(wp.attn_tokens, 1, 0).astype(np.float16))
        if "patch_grid" not in store.meta:
            store.update_meta(patch_grid=list(wp.patch_grid))


def read_prediction(store, start: int, stop: int) -> WindowPrediction:
    """The model's window ``[start, stop)`` rebuilt from ``store`` (dense arrays, poses, gates, tokens)."""
    sl = slice(start, stop)

    def get(name):
        return store.root[name][sl] if name in store else None
    tokens = get("net/attn_tokens")
    return WindowPrediction(
        indices=np.arange(start, stop), T_prev_cur=get("net/T_prev_cur"), pose_cov=get("net/pose_cov"),
        gates=get("gates"), depth=get("frames/depth"), depth_conf=get("frames/depth_conf"),
        semantics=get("frames/semantics"), dynamic=get("frames/dynamic"),
        attn_tokens=None if tokens is None else np.moveaxis(tokens.astype(np.float32), 0, 1),
        patch_grid=tuple(store.meta["patch_grid"]) if "patch_grid" in store.meta else None)


def save_state(store, state, upto: int) -> None:
    """Keep the recurrent ``state`` returned after frame ``upto - 1`` (write it before marking the window done).

    ``state`` is the predictor's: a dict whose ``"model"`` entry maps names to
    tensors/arrays, plus JSON-safe entries (e.g. ``"ref"``).
    """
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        return
    arrays = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in state["model"].items()}
    extra = {k: v for k, v in state.items() if k != "model"}
    store.write_map("net/state", arrays, attrs={"upto": int(upto), "extra": extra})


def load_state(store, upto: int):
    """The recurrent state saved by :func:`save_state` after frame ``upto - 1``, or None (then the model restarts)."""
    if "net/state" not in store or store.attrs("net/state").get("upto") != upto:
        return None
    import torch
    arrays = store.read("net/state")
    return {"model": {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()},
            **store.attrs("net/state").get("extra", {})}
