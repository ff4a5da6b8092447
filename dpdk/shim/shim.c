/* DPDK's fast-path functions are `static inline` in its headers, so they
 * have no symbol to link against. Each is exported here as `name_`; the
 * Rust side re-exposes it as `name`. No logic. */
#include "wrapper.h"

uint16_t rte_eth_rx_burst_(uint16_t port_id, uint16_t queue_id,
                           struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t rte_eth_tx_burst_(uint16_t port_id, uint16_t queue_id,
                           struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *rte_pktmbuf_alloc_(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int rte_pktmbuf_alloc_bulk_(struct rte_mempool *pool, struct rte_mbuf **mbufs,
                            unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(pool, mbufs, count);
}

void rte_pktmbuf_free_(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

unsigned int rte_lcore_id_(void)
{
	return rte_lcore_id();
}

int rte_errno_(void)
{
	return rte_errno;
}

uint16_t rte_pktmbuf_data_room_size_(struct rte_mempool *mp)
{
	return rte_pktmbuf_data_room_size(mp);
}

uint16_t rte_pktmbuf_priv_size_(struct rte_mempool *mp)
{
	return rte_pktmbuf_priv_size(mp);
}
