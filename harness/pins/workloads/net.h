/* pinharness workloads: the frames a "network device" writes into pinned pages
 * (af_xdp, vhost_net). A broadcast Ethernet frame with a local experimental
 * ethertype and PH_PAYLOAD bytes of 'B', sent out of an interface with AF_PACKET. */
#ifndef PH_NET_H
#define PH_NET_H
#include "common.h"
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>

#define PH_ETH_HLEN 14
#define PH_PAYLOAD 1000

/* Send n pattern-B frames out of ifname; returns how many went, -1 without a packet socket. */
PH_FN int ph_send_frames(const char *ifname, size_t n)
{
	int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)), sent = 0;
	struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(ifname),
				 .sll_halen = 6, .sll_addr = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
	unsigned char frame[PH_ETH_HLEN + PH_PAYLOAD];
	if (ps < 0)
		return -1;
	memset(frame, 0xff, 6);
	memset(frame + 6, 0x02, 6);
	frame[12] = 0x88;
	frame[13] = 0xb5; /* local experimental ethertype */
	memset(frame + PH_ETH_HLEN, 'B', PH_PAYLOAD);
	for (size_t i = 0; i < n; i++)
		sent += sendto(ps, frame, sizeof(frame), 0, (struct sockaddr *)&ll, sizeof(ll)) == (ssize_t)sizeof(frame);
	close(ps);
	return sent;
}
#endif
