/* rdma: register the MAP_SHARED file mapping as an RDMA memory region on a
 * soft-RoCE device (ibv_reg_mr: a FOLL_LONGTERM|FOLL_WRITE pin via ib_umem),
 * let writeback clean the pages and reclaim strip their buffers, then let the
 * "device" write pattern B into them with an RDMA WRITE over a loopback RC QP
 * pair, and deregister (unpin + dirty in __ib_umem_release).
 *
 * args: file=PATH pages=N dev=rxe0 [gid=N] cgroup=DIR [reclaim=1]
 *       mode=verify file=PATH pages=N
 * Linked against the guest's libibverbs (same Debian release as the host).
 */
#include "common.h"
#include <infiniband/verbs.h>

static int to_rts(struct ibv_qp *qp, uint32_t dest_qpn, union ibv_gid *gid, int gid_index)
{
	struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .port_num = 1,
				.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE};
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		return -1;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = dest_qpn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = *gid;
	a.ah_attr.grh.sgid_index = (uint8_t)gid_index;
	a.ah_attr.grh.hop_limit = 1;
	a.ah_attr.port_num = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
			  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		return -1;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	return ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
				     IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
}

int main(int argc, char **argv)
{
	struct ph_opts o = ph_opts(argc, argv, 0, 0); /* mode=verify: verifies and exits */
	const char *file = o.file;
	size_t pages = o.pages;
	const char *devname = ph_arg(argc, argv, "dev", "rxe0"), *cgroup = o.cgroup;
	int gid_index = (int)ph_argl(argc, argv, "gid", 0), do_reclaim = o.reclaim;
	long long vm0[PH_VMSTAT_KEYS], vm1[PH_VMSTAT_KEYS];

	int fd;
	unsigned char *map = ph_map_file(file, pages, &fd);
	size_t len = pages * PH_PAGE;
	unsigned char *src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED)
		ph_die("mmap");
	for (size_t i = 0; i < pages; i++)
		ph_fill(src + i * PH_PAGE, 'B', i);
	ph_vmstat(vm0);

	struct ibv_device **list = ibv_get_device_list(NULL), *dev = NULL;
	for (int i = 0; list && list[i]; i++)
		if (!strcmp(ibv_get_device_name(list[i]), devname))
			dev = list[i];
	if (!dev)
		ph_die("no such RDMA device");
	struct ibv_context *ctx = ibv_open_device(dev);
	struct ibv_pd *pd = ctx ? ibv_alloc_pd(ctx) : NULL;
	if (!pd)
		ph_die("ibv_open_device/alloc_pd");
	struct ibv_mr *src_mr = ibv_reg_mr(pd, src, len, IBV_ACCESS_LOCAL_WRITE);
	if (!src_mr)
		ph_die("register source buffer");
	/* the pin under test */
	struct ibv_mr *mr = ibv_reg_mr(pd, map, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	int pin_errno = mr ? 0 : errno;

	printf("{\"workload\": \"rdma\", \"pages\": %zu, \"device\": \"%s\", \"flags_held\": ", pages, devname);
	ph_flags_json(stdout, map, pages);
	struct ph_wb wb = {0, 0, 0, 0};
	int wc_status = -1, qp_err = 0;
	size_t b_in_memory = 0;
	if (mr) {
		struct ibv_cq *cq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
		struct ibv_qp_init_attr qa = {.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
					      .cap = {.max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1}};
		struct ibv_qp *qa_ = cq ? ibv_create_qp(pd, &qa) : NULL, *qb = cq ? ibv_create_qp(pd, &qa) : NULL;
		union ibv_gid gid;
		if (!qa_ || !qb || ibv_query_gid(ctx, 1, gid_index, &gid) || to_rts(qa_, qb->qp_num, &gid, gid_index) ||
		    to_rts(qb, qa_->qp_num, &gid, gid_index))
			qp_err = errno ? errno : -1;
		if (qp_err)
			ph_step("loopback RC QP pair", -1);
		wb = ph_writeback_and_reclaim(fd, map, pages, cgroup, do_reclaim); /* pin held */
		if (!qp_err) {
			/* the device: an RDMA WRITE of pattern B into the pinned region */
			struct ibv_sge sge = {.addr = (uintptr_t)src, .length = (uint32_t)len, .lkey = src_mr->lkey};
			struct ibv_send_wr wr = {.wr_id = 1, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
						 .send_flags = IBV_SEND_SIGNALED}, *bad;
			wr.wr.rdma.remote_addr = (uintptr_t)map;
			wr.wr.rdma.rkey = mr->rkey;
			if (ibv_post_send(qa_, &wr, &bad) == 0) {
				struct ibv_wc wc;
				double deadline = ph_now() + 30;
				int n = 0;
				while ((n = ibv_poll_cq(cq, 1, &wc)) == 0 && ph_now() < deadline)
					usleep(1000);
				if (n == 1)
					wc_status = wc.status;
			}
			if (wc_status != IBV_WC_SUCCESS) { /* the device did not write: no outcome to judge */
				errno = EIO;
				ph_step("RDMA WRITE completion", -1);
			}
		}
		for (size_t i = 0; i < pages; i++)
			b_in_memory += ph_classify(map + i * PH_PAGE) == 'B';
		if (qa_)
			ibv_destroy_qp(qa_);
		if (qb)
			ibv_destroy_qp(qb);
		ibv_dereg_mr(mr); /* unpin: __ib_umem_release dirties the pages */
		if (cq)
			ibv_destroy_cq(cq);
	}
	ibv_dereg_mr(src_mr);
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	ibv_free_device_list(list);
	ph_unmap_file(map, pages, fd);
	ph_vmstat(vm1);
	printf(", \"qp_error\": %d, \"wc_status\": %d", qp_err, wc_status);
	ph_print_result(pin_errno, &wb, b_in_memory, vm0, vm1);
	return 0;
}
