# The image of shoal's scheduler and workers (charts/shoal runs it on
# Kubernetes; docs/deployment.md says how to build and push it).
#
#   docker build -t shoal:0.1.0 .
#   docker run --rm -e SHOAL_TOKEN=... -p 8786:8786 shoal:0.1.0 scheduler --host 0.0.0.0
#
# Add what your tasks import to the same image (a FROM this one, or an
# EXTRA_PACKAGES build argument): the workers run your functions.
FROM python:3.11-slim

ARG EXTRA_PACKAGES=""
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/shoal
COPY pyproject.toml README.md ./
COPY shoal ./shoal
RUN pip install . ${EXTRA_PACKAGES} \
    && useradd --create-home --uid 1000 shoal
USER 1000
WORKDIR /home/shoal

# the scheduler, and the port the chart gives each worker
EXPOSE 8786 8788
ENTRYPOINT ["python", "-m", "shoal"]
CMD ["scheduler", "--host", "0.0.0.0", "--port", "8786"]
