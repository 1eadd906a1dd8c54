# cffi has no pyproject.toml key for its builder, and setuptools none for a plain C
# program: this file names the extension and builds minibox-monitor beside it.
import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildExtAndMonitor(build_ext):
    """Also compile csrc/monitor.c and csrc/init.c into minibox/minibox-monitor and
    minibox/minibox-init: executables, not Python extensions. The monitor replaces the
    Python process that stays with a detached container, to keep it small; init is the
    reaper `run --init` puts at PID 1."""

    def run(self) -> None:
        super().run()
        out_dir = "minibox" if self.inplace else os.path.join(self.build_lib, "minibox")
        for name in ("monitor", "init"):
            objs = self.compiler.compile([f"csrc/{name}.c"], output_dir=self.build_temp,
                                         extra_preargs=["-O2", "-Wall"])
            # init runs inside containers that have no libc: link it statically.
            extra = ["-static"] if name == "init" else []
            self.compiler.link_executable(objs, f"minibox-{name}", output_dir=out_dir,
                                          extra_preargs=extra)


setup(cffi_modules=["csrc/build_native.py:ffibuilder", "csrc/build_nft.py:ffibuilder"],
      cmdclass={"build_ext": BuildExtAndMonitor})
