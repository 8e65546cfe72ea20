# vsensor: the user, made before the files are installed (the Fedora packaging
# convention: it is kept on erase, so no file can pass to a reused uid).
getent group vsensor >/dev/null || groupadd --system vsensor
getent passwd vsensor >/dev/null || useradd --system --gid vsensor --home-dir /nonexistent --no-create-home --shell /sbin/nologin --comment "vsensor collector" vsensor
exit 0
