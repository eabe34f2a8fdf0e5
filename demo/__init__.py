"""First-run helpers: sample images from Debian's static busybox, and the commands to try once serving."""
