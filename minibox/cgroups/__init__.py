"""Cgroups: one interface (Driver in driver.py), a driver each for v1, v2 and hybrid hosts.

detect.py reads where each controller is mounted; v1/ and v2/ hold one small module
per controller that turns the OCI `linux.resources` into that controller's files;
fs.py is the only place a cgroup file is written, and it narrates every write.
The engine never writes a cgroup file itself.
"""
