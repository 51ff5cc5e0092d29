"""Vector quantization: exact k-means on CPU and CUDA (``vq.kmeans``), the fused Triton assignment
for small d (``vq.triton_assign``, CUDA only) and straight-through quantizers (``vq.ste``)."""
