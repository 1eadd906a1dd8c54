"""cgroup v2 controllers, one module each (Documentation/admin-guide/cgroup-v2.rst)."""
