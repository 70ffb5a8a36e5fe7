#include "net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

bool kh_host_is_loopback(const char *host) {
        struct in6_addr a6;
        struct in_addr a4;
        char bare[INET6_ADDRSTRLEN];
        size_t len;

        if (!host)
                return false;
        if (strcmp(host, "localhost") == 0)
                return true;
        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;

        len = strlen(host);
        if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
                if (len - 2 >= sizeof(bare))
                        return false;
                memcpy(bare, host + 1, len - 2);
                bare[len - 2] = 0;
                host = bare;
        }
        if (inet_pton(AF_INET6, host, &a6) != 1)
                return false;
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
}
