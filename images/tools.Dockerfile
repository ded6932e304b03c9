# The versioned tools image the components run in: the modelci CLI plus the default serving app
# and Dockerfile (used by `modelci build` when the consumer repo has no app/ of its own).
# Build from the repository root:  docker build -f images/tools.Dockerfile -t TOOLS_IMAGE .
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
RUN python3 -m venv /opt/modelci
COPY pyproject.toml README.md /src/
COPY scripts /src/scripts
RUN /opt/modelci/bin/pip install --no-cache-dir /src && rm -rf /src /root/.cache
COPY Dockerfile /opt/modelci-serving/Dockerfile
COPY app /opt/modelci-serving/app
ENV PATH=/opt/modelci/bin:$PATH \
    MODELCI_SERVING_CONTEXT=/opt/modelci-serving \
    PYTHONUNBUFFERED=1
RUN useradd --uid 10001 --create-home modelci
USER 10001
CMD ["modelci", "--help"]
