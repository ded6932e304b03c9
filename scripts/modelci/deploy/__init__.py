"""Deploying a serving image to an environment on a Docker host the job does not share.

Each environment is a stable front proxy (nginx, the published proxy image, listening on the
environment URL's port) in front of one backend container (the serving image, by digest, on a
loopback port of the target). Everything happens on the target through the Docker API at
DOCKER_HOST: readiness, smoke test and port choice run inside containers on the target (`exec`),
never through the job's own loopback. See docs/deploy-targets.md.

- `target`: the target's containers (proxy, backends, lock) and HTTP requests made on the target;
- `proxy`: the proxy's site config (the upstream it serves is the record of what is served);
- `lock`: the environment's lock, a container on the target with a heartbeat;
- `checks`: readiness and smoke test.
The orchestration is `modelci.steps.deploy`.
"""
