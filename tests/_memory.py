"""Peak resident memory, for the memory tests' subprocess scripts (Linux /proc)."""

# Prepended to each script: the tests measure in a fresh process, so that the
# peak belongs to the work under test alone.
PEAK_HELPERS = r"""
def rss_mib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:  # the peak (VmHWM) starts again from now
        handle.write("5")
"""
