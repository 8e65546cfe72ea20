# ossensor: the user, made before the files are installed (the Fedora packaging
# convention: it is kept on erase, so no file can pass to a reused uid).
getent group ossensor >/dev/null || groupadd --system ossensor
getent passwd ossensor >/dev/null || useradd --system --gid ossensor --home-dir /nonexistent --no-create-home --shell /sbin/nologin --comment "ossensor capture and uplink processes" ossensor
exit 0
