#!/usr/bin/env bash
# System packages the pip-only set-up needs on Debian/Ubuntu: cmake and a C++ compiler (to build vision_msgs and
# tf2_msgs into the venv) and libusb-1.0 (open3d's wheel links it). Installs what is missing when run as root (CI,
# containers); otherwise prints the apt-get line to run and fails.
set -euo pipefail
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
ldconfig -p 2>/dev/null | grep -q "libusb-1.0.so.0" || missing+=(libusb-1.0-0)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "system_deps: installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "system_deps: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
