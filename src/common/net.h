/* Facts about host names and addresses that several modules decide on. */
#pragma once

#include <stdbool.h>

/**
 * kh_host_is_loopback() - whether host names this machine's loopback interface: the name
 * "localhost", an IPv4 address in 127.0.0.0/8, the IPv6 address ::1 (bare or in brackets,
 * as in a URL) or an IPv4-mapped IPv6 address in 127.0.0.0/8. Numeric forms only, besides
 * "localhost": nothing is resolved. NULL is not loopback.
 */
bool kh_host_is_loopback(const char *host);
