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


def peak_environment():
    """The environment of a memory test's subprocess.

    glibc raises its mmap threshold each time a large block is freed, after
    which freed batch buffers stay in the heap instead of going back to the
    system: under CPU load the peak growth of the memmap prediction test then
    varied from 100 to 714 MiB between runs of the same code. A fixed
    threshold (glibc's default, 128 KiB) makes every large buffer return on
    free, so the peak measures what skvision holds (85 MiB in 5 of 5 loaded
    runs).
    """
    import os

    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
