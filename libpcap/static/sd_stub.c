/* libdbus-1.a refers to these two libsystemd functions (socket activation of
 * a D-Bus server); there is no libsystemd.a. The sensor is never socket
 * activated, so "no descriptors passed" is the true answer. Linked only into
 * the crt-static build (shared/build.rs). */
int sd_listen_fds(int unset_environment) {
    (void)unset_environment;
    return 0;
}

int sd_is_socket(int fd, int family, int type, int listening) {
    (void)fd; (void)family; (void)type; (void)listening;
    return 0;
}
