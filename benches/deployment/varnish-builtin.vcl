vcl 4.1;
# Varnish with nothing but a backend: its built-in VCL decides (look every GET
# up in the cache, fetch on a miss). The control run of benches/deployment.sh,
# next to varnish.vcl (pass or pipe for /ch/). @UP1@ is tandem.
backend tandem {
    .host = "127.0.0.1";
    .port = "@UP1@";
}
