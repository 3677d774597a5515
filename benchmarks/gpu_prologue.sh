# Sourced by benchmarks/gpu_paper_sprites.sh where python3 has no snakemake (the device machine's image):
# installs the wheels carried in .whl/ (benchmarks/gpu_wheels.txt, fetched by benchmarks/gpu_prepare.sh)
# offline and without resolving dependencies into SITE (default /tmp/site), puts SITE ahead on PYTHONPATH
# and checks that snakemake and jsonschema import.
site=${SITE:-/tmp/site}
carried=(.whl/*.whl)
if [[ ! -f ${carried[0]} ]]; then
  echo "error: $(command -v python3) cannot import snakemake and $PWD/.whl holds no wheels: run" \
    "bash benchmarks/gpu_prepare.sh where PyPI is reachable and carry .whl (benchmarks/README.md)" >&2
  return 1
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${carried[@]}"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
python3 -c 'import jsonschema, snakemake; print(f"snakemake {snakemake.__version__} from '"$site"'")'
