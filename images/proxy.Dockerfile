# The environment proxy of `modelci deploy` (docs/deploy-targets.md): nginx, non-root, built and
# published with the tools image on release (same version), pulled onto deploy hosts by digest, never
# built there. Its site config lives on a volume at /etc/modelci/site (switched through `exec`), so
# the container runs with a read-only root filesystem and a tmpfs at /tmp/nginx.
# Build from the repository root:  docker build -f images/proxy.Dockerfile -t PROXY_IMAGE .
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-core >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/nginx /var/lib/nginx \
 && (getent group 10001 >/dev/null || groupadd --gid 10001 modelci) \
 && (getent passwd 10001 >/dev/null || useradd --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin modelci) \
 && mkdir -p /etc/modelci/site /tmp/nginx \
 && printf '# no backend yet\n' > /etc/modelci/site/site.conf \
 && chown -R 10001:10001 /etc/modelci/site /tmp/nginx
COPY images/proxy-nginx.conf /etc/modelci/nginx.conf
USER 10001:10001
STOPSIGNAL SIGQUIT
CMD ["nginx", "-c", "/etc/modelci/nginx.conf"]
