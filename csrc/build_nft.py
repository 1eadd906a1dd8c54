"""cffi builder (API mode) for minibox._nft: libnftables(3), for published ports.

A module of its own, apart from minibox._native: only `-p` needs libnftables, so a
plain `run` never loads it (the dynamic loader's cost stays off the start path).
libnftables parses nft(8)'s language and sends the netlink batch itself, so minibox
talks to the kernel without running nft(8). The declarations below are checked against
<nftables/libnftables.h> (libnftables-dev) when the module is compiled.
"""

from cffi import FFI

ffibuilder = FFI()

ffibuilder.cdef(
    """
    struct nft_ctx;
    #define NFT_CTX_DEFAULT ...
    struct nft_ctx *nft_ctx_new(uint32_t flags);
    void nft_ctx_free(struct nft_ctx *ctx);
    int nft_ctx_buffer_output(struct nft_ctx *ctx);
    int nft_ctx_buffer_error(struct nft_ctx *ctx);
    const char *nft_ctx_get_output_buffer(struct nft_ctx *ctx);
    const char *nft_ctx_get_error_buffer(struct nft_ctx *ctx);
    int nft_run_cmd_from_buffer(struct nft_ctx *nft, const char *buf);
    """
)

ffibuilder.set_source(
    "minibox._nft",
    "#include <nftables/libnftables.h>",
    libraries=["nftables"],
    extra_compile_args=["-O2", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
