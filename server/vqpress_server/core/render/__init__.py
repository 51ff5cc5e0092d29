"""Rendering: splat rasterization (gsplat on CUDA, a pure-PyTorch twin elsewhere) and cameras.

- ``cameras``: ``Camera`` (OpenCV world-to-camera ``viewmat`` + ``K``), cameras.json, orbit cameras;
- ``splats``: ``render`` / ``render_views`` (no grad) and the differentiable ``rasterize``;
- ``sh``: real spherical harmonics up to degree 3;
- ``torch_raster``: the PyTorch twin of gsplat's classic rasterizer;
- ``images``: uint8 conversion, PNG and contact-sheet output.

Import the submodules directly; this package imports nothing so that each stays cheap to load.
"""
