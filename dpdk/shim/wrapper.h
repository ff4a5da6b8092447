/* Headers bindgen reads to generate bypass-dpdk-sys. Only the EAL, ethdev,
 * mbuf, mempool, lcore and ring APIs are exposed (see the allowlist in
 * build.rs). The shim's prototypes come LAST: bindgen parses extra header
 * contents before the main header, and types it meets before their
 * definition come out opaque. */
#ifndef BYPASS_DPDK_WRAPPER_H
#define BYPASS_DPDK_WRAPPER_H

#include <rte_config.h>
#include <rte_version.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_dev.h>
#include <rte_ring.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>

/* ---- shim: DPDK's static inline fast-path functions, exported ---- */

uint16_t rte_eth_rx_burst_(uint16_t port_id, uint16_t queue_id,
                           struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t rte_eth_tx_burst_(uint16_t port_id, uint16_t queue_id,
                           struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *rte_pktmbuf_alloc_(struct rte_mempool *mp);
int rte_pktmbuf_alloc_bulk_(struct rte_mempool *pool, struct rte_mbuf **mbufs,
                            unsigned int count);
void rte_pktmbuf_free_(struct rte_mbuf *m);
unsigned int rte_lcore_id_(void);
int rte_errno_(void);
uint16_t rte_pktmbuf_data_room_size_(struct rte_mempool *mp);
uint16_t rte_pktmbuf_priv_size_(struct rte_mempool *mp);

#endif
