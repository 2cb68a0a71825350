"""The systemd units and the utility host's install recipe.

``systemd-analyze verify`` checks every unit in deploy/ (with its folder pointed at this
checkout, so the executables it names exist); ``make ops-deps`` installs Debian's systemd
when the command is missing. The install recipe runs for real, staged under a temporary root
(``--root``: no user, no systemctl): a fresh venv with the web and ops extras, the app, the
settings and secret files with their modes, units that verify against the staged venv, and
gunicorn from that venv answering HTTP. The nginx site (deploy/nginx-dr.conf) passes
``nginx -t`` when nginx is installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from daemon_helpers import ROOT, wait_until
from demand_response import devchain

DEPLOY = ROOT / "deploy"
UNITS = ("dr-consumer.service", "dr-utility.service", "dr-web.service")
_NO_SYSTEMD = "systemd-analyze is missing: `make ops-deps` installs Debian's systemd (root)"


def _verify(units: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True,
                          timeout=60, cwd=units[0].parent)


def _pointed(unit: str, prefix: Path, folder: Path, source: Path = DEPLOY) -> Path:
    text = (source / unit).read_text().replace("/opt/demand-response", str(prefix))
    out = folder / unit
    out.write_text(text)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=_NO_SYSTEMD)
def test_every_unit_verifies_cleanly_with_systemd_analyze(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    prefix.mkdir()
    (prefix / ".venv").symlink_to(ROOT / ".venv")
    (prefix / "app").symlink_to(ROOT)
    done = _verify([_pointed(unit, prefix, tmp_path) for unit in UNITS])
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=_NO_SYSTEMD)
def test_a_unit_naming_a_missing_program_fails_verification(tmp_path: Path) -> None:
    done = _verify([_pointed("dr-web.service", tmp_path / "nowhere", tmp_path)])
    assert done.returncode != 0 and "is not executable" in done.stderr


def test_units_are_hardened_like_the_consumers() -> None:
    required = ("NoNewPrivileges=true", "ProtectSystem=strict", "ProtectHome=true",
                "ReadWritePaths=/opt/demand-response/database", "PrivateTmp=true", "PrivateDevices=true",
                "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "User=dr")
    for unit in UNITS:
        lines = (DEPLOY / unit).read_text().splitlines()
        assert all(line in lines for line in required), unit
        assert not any("#" in line for line in lines if not line.startswith("#")), f"a trailing comment in {unit}"
    web = (DEPLOY / "dr-web.service").read_text()
    assert "Environment=WEB_BIND=127.0.0.1:5000" in web


def test_install_recipe_refuses_bad_arguments_in_one_line() -> None:
    for args, message in ((["--bogus"], "unknown argument --bogus (see --help)"),
                          (["--root", "/tmp/x", "--metrics-port", "nine"], "--metrics-port must be a number (0: none)")):
        done = subprocess.run(["sh", str(DEPLOY / "install-utility.sh"), *args], capture_output=True, text=True)
        assert (done.returncode, done.stderr) == (1, f"install-utility: error: {message}\n")
    usage = subprocess.run(["sh", str(DEPLOY / "install-utility.sh"), "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--root DIR" in usage.stdout


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DR_SLOW"),
                    reason="builds a venv with the web and ops extras (~3 min); DR_SLOW=1 runs it")
def test_install_recipe_stages_a_working_utility_host(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = subprocess.run(["sh", str(DEPLOY / "install-utility.sh"), "--root", str(root), "--metrics-port", "9200"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    prefix = root / "opt" / "demand-response"
    env_file = prefix / ".env"
    assert "METRICS_PORT=9200" in env_file.read_text().splitlines()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    for secret in ("utility.secret", "web.secret"):
        assert stat.S_IMODE((root / "etc" / "dr" / secret).stat().st_mode) == 0o600
    web_key = (root / "etc" / "dr" / "web.secret").read_text()
    assert len(web_key.strip().split("=", 1)[1]) == 64
    # Idempotent: a second run keeps the settings and the secrets.
    env_file.write_text(env_file.read_text() + "# mine\n")
    again = subprocess.run(["sh", str(DEPLOY / "install-utility.sh"), "--root", str(root)], capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert env_file.read_text().endswith("# mine\n") and (root / "etc" / "dr" / "web.secret").read_text() == web_key
    # The staged venv has the light package and the extras, and no dev tools.
    python = prefix / ".venv" / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import demand_response, flask, gunicorn, prometheus_client;"
                            "import importlib.util as u; print(u.find_spec('brownie') is None)"],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert probe.stdout.strip() == "True", probe.stderr
    units = [root / "etc" / "systemd" / "system" / unit for unit in ("dr-utility.service", "dr-web.service")]
    if shutil.which("systemd-analyze"):
        done = _verify([_pointed(u.name, prefix, tmp_path, u.parent) for u in units])
        assert done.returncode == 0 and done.stdout + done.stderr == "", done.stderr
    # gunicorn from the staged venv serves the staged app, as dr-web.service starts it.
    port = devchain.free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(prefix), "DR_ENV_FILE": str(env_file), "WEB_BIND": f"127.0.0.1:{port}"}
    server = subprocess.Popen([str(prefix / ".venv" / "bin" / "gunicorn"), "-c", str(prefix / "app/deploy/gunicorn.conf.py"),
                               "--pythonpath", str(prefix / "app"), "flaskapp.wsgi:build()"], cwd=prefix, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def health() -> int:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return 0
            return 200
        assert wait_until(health, 60, what="the staged gunicorn") == 503  # no RPC_URL / contract yet
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def test_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or os.environ.get("DR_NGINX")
    if not nginx or shutil.which("openssl") is None:
        pytest.skip("nginx (or openssl) is not installed: `apt-get install nginx` to check the reverse-proxy recipe")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=dr.example",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    site = (DEPLOY / "nginx-dr.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/dr.example.org/fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace("/etc/letsencrypt/live/dr.example.org/privkey.pem", str(tmp_path / "key.pem"))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        "http {\n access_log off;\n"
        + "".join(f" {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f" include {tmp_path}/site.conf;\n}}\n")
    done = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr
