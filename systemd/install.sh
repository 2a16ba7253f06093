#!/usr/bin/env bash
# Install swarmdrive on a vehicle: a virtual environment in /opt/swarmdrive, the user, the two
# units, and (if none is there) the example config in /etc/swarmdrive. Run as root from a
# checkout:  sudo systemd/install.sh
# Then: put the vehicle key at /etc/swarmdrive/vehicle.key (mode 0600, owner swarmdrive; or
# 'swarmdrive chain keygen'), edit /etc/swarmdrive/vehicle.toml, check it with
# 'swarmdrive config check', and: systemctl enable --now swarmdrive-serve swarmdrive-learn
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/swarmdrive

python3 -m venv "$prefix"
"$prefix/bin/pip" install --quiet "$here"
install -d -m 0755 "$prefix/docs/spec"
install -m 0644 "$here"/docs/spec/*.md "$prefix/docs/spec/"
install -m 0644 "$here/README.md" "$prefix/README.md"

install -m 0644 "$here/systemd/swarmdrive.sysusers" /usr/lib/sysusers.d/swarmdrive.conf
systemd-sysusers /usr/lib/sysusers.d/swarmdrive.conf
install -m 0644 "$here/systemd/swarmdrive-serve.service" "$here/systemd/swarmdrive-learn.service" \
    /etc/systemd/system/

install -d -m 0750 -o root -g swarmdrive /etc/swarmdrive
if [ ! -e /etc/swarmdrive/vehicle.toml ]; then
    "$prefix/bin/swarmdrive" config example \
        | sed -e 's#^key_file = "vehicle.key"#key_file = "/etc/swarmdrive/vehicle.key"#' \
              -e 's#^state_dir = "state"#state_dir = "/var/lib/swarmdrive"#' \
              -e 's#^socket = "serve.sock"#socket = "/run/swarmdrive/serve.sock"#' \
              -e 's#^uri = "labels/front"#uri = "/var/lib/swarmdrive/labels/front"#' \
        > /etc/swarmdrive/vehicle.toml
    chmod 0640 /etc/swarmdrive/vehicle.toml
    chgrp swarmdrive /etc/swarmdrive/vehicle.toml
fi
systemctl daemon-reload
echo "installed; edit /etc/swarmdrive/vehicle.toml, then check it as the service's user:"
echo "  sudo -u swarmdrive /bin/swarmdrive config check /etc/swarmdrive/vehicle.toml"
