"""The environment proxy's config: what a deploy writes is valid nginx in the published proxy image,
names the served backend (the record crash recovery reads), forwards gRPC on its own listener and
limits bodies exactly as the app does."""
from __future__ import annotations

import pytest

from modelci.deploy import proxy as proxy_conf

SERVED = proxy_conf.Served("modelci-ns-staging-0123456789ab-beef", 41234, 41235)


def test_the_config_names_the_served_backend_and_parses_back():
    conf = proxy_conf.site_conf("198.18.0.6:9001", SERVED, 10 << 20, "198.18.0.6:9011")
    assert proxy_conf.served(conf) == SERVED
    assert "client_max_body_size 10485760;" in conf
    assert "grpc_pass grpc://127.0.0.1:41235;" in conf and "listen 198.18.0.6:9011 http2" in conf
    assert proxy_conf.served("# no backend yet\n") is None
    assert "grpc_pass" not in proxy_conf.site_conf("9001", SERVED, 1, None)


@pytest.mark.e2e
def test_nginx_in_the_proxy_image_accepts_the_config_read_only(docker_client, proxy_image, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.conf").write_text(proxy_conf.site_conf("127.0.0.1:1", SERVED, 10 << 20, "127.0.0.1:2"))
    site.chmod(0o755)
    (site / "site.conf").chmod(0o644)
    out = docker_client.containers.run(
        proxy_image, ["nginx", "-t", "-c", proxy_conf.MAIN_CONF], remove=True, network_mode="none",
        read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
        tmpfs={"/tmp/nginx": "rw,size=8m,uid=10001,gid=10001,mode=0700"},
        volumes={str(site): {"bind": proxy_conf.SITE_DIR, "mode": "ro"}}, stderr=True)
    assert b"test is successful" in out, out
