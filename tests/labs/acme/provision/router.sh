#!/bin/sh
# Applies ACME's routing defaults and marks the router as provisioned.
set -eu
mkdir -p /etc/acme
install -m 0644 /tmp/acme-routing.conf /etc/sysctl.d/60-acme-routing.conf
sysctl -q -p /etc/sysctl.d/60-acme-routing.conf
date -u +%FT%TZ > /etc/acme/provisioned
