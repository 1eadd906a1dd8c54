"""cgroup v1 controllers, one module each (Documentation/admin-guide/cgroup-v1/)."""
