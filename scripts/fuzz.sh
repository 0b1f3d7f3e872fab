#!/usr/bin/env bash
# Placeholder until the fuzz targets land.
echo "fuzz: no targets yet"
