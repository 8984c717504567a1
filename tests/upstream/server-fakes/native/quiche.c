/*
 * Stand-in for Netty's QUIC transport library (libnetty_quiche_linux_x86_64.so), which the
 * JVM unpacks into java.io.tmpdir and maps executable. The fake `java` copies this object
 * there and loads it with dlopen(3), so a tmpdir mounted noexec fails the way the real
 * server does ("failed to map segment from shared object"). Built with -nostdlib: it needs
 * nothing from the C library and loads on any glibc.
 */
const char *quiche_version(void) { return "0.0.0-hyos-replica"; }
