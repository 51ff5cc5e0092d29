# vqpress server on one or more NVIDIA GPUs.
#
#   docker build -t vqpress .
#   VQPRESS_TOKEN=... docker compose up -d
#
# The devel base brings nvcc: gsplat 1.5.3 compiles its CUDA kernels with it (torch cpp_extension
# JIT). We compile them here, once, at build time, so no container waits ~90 s on its first render.
# torch itself is pinned to the version the test suite runs with (TORCH_VERSION), not whatever the
# base image carries.
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-devel
FROM ${BASE_IMAGE}
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # GPU architectures gsplat's kernels are built for: A100, A10/RTX 30xx, L4/L40/RTX 40xx, H100/H200,
    # plus PTX of the newest so that later GPUs (Blackwell) JIT-compile it instead of failing.
    TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0+PTX" \
    # Where torch cpp_extension puts (and later finds) gsplat's compiled module: a fixed path
    # baked into the image, not the runtime user's ~/.cache.
    TORCH_EXTENSIONS_DIR=/opt/vqpress/torch_extensions \
    MAX_JOBS=8 \
    VQPRESS_DATA_DIR=/data \
    VQPRESS_HOST=0.0.0.0 \
    VQPRESS_PORT=50051

WORKDIR /opt/vqpress/src

# The project with the server and cluster (Ray) extras and the tested torch; ninja drives the kernel build.
COPY pyproject.toml README.md LICENSE ./
COPY protos ./protos
COPY client ./client
COPY server ./server
RUN python -m pip install ".[server,cluster]" "torch==${TORCH_VERSION}" ninja \
    && python -c "import torch, vqpress, vqpress_server.app; assert torch.__version__.startswith('${TORCH_VERSION}'), torch.__version__"

# Precompile gsplat's CUDA backend: importing gsplat.cuda._backend builds gsplat_cuda.so into
# $TORCH_EXTENSIONS_DIR (nvcc needs no GPU; TORCH_CUDA_ARCH_LIST names the targets).
RUN python -c "from gsplat.cuda._backend import _C; assert _C is not None, 'gsplat CUDA backend did not build'" \
    && test -f "$TORCH_EXTENSIONS_DIR/gsplat_cuda/gsplat_cuda.so"

# Run as an unprivileged user that owns only the data dir and the kernel cache.
RUN useradd --create-home --uid 10001 --user-group vqpress \
    && mkdir -p /data \
    && chown -R vqpress:vqpress /data "$TORCH_EXTENSIONS_DIR"
USER vqpress
WORKDIR /home/vqpress

# Artifacts, the job table and worker scratch space: keep them across container restarts.
VOLUME ["/data"]
EXPOSE 50051

# Health is answered without a token; exits 0 only when the server reports SERVING. With TLS on
# (VQPRESS_TLS_CERT set) it checks the server's own certificate, for VQPRESS_TLS_SERVER_NAME
# (default localhost): a self-signed certificate, or a chain that ends with its CA.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD vqpress --server 127.0.0.1:50051 ${VQPRESS_TLS_CERT:+--tls-ca "$VQPRESS_TLS_CERT" --tls-server-name "${VQPRESS_TLS_SERVER_NAME:-localhost}"} health || exit 1

ENTRYPOINT ["vqpress-server"]
CMD ["serve"]
