# ossensor: after an upgrade ($1 >= 1) a running unit restarts on the new
# binary. After an erase ($1 = 0) the generated config file goes: it holds
# the key and is remade at every start. The user stays (see ossensor-pre.sh).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart ossensor.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    rm -f /etc/darktrace/ossensor.cfg /etc/darktrace/.ossensor.cfg.*.tmp
    rmdir /etc/darktrace 2>/dev/null || :
fi
exit 0
