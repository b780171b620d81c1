vcl 4.1;
# Varnish in front of tandem. benches/deployment.sh fills in @UP1@ (tandem),
# @STREAMS@ (`pass`, or `pipe` for the pipe variant) and @TIMEOUT@ (150s, or
# 2s to show a long-poll cut), and runs
#   varnishd -F -j none -n DIR/n -a 127.0.0.1:PORT -f DIR/varnish.vcl \
#     -s malloc,32m -p pipe_timeout=150
# in the foreground (-j none: no privilege separation, run as the caller).

backend tandem {
    .host = "127.0.0.1";
    .port = "@UP1@";
    # A long-poll sends nothing until it answers (up to tandem's
    # --poll-timeout-max, 120 s); a quiet stream sends a heartbeat every
    # --heartbeat (15 s). Both must fit under these (defaults: 60 s).
    .first_byte_timeout = @TIMEOUT@;
    .between_bytes_timeout = @TIMEOUT@;
}

sub vcl_recv {
    # Streams, polls and publishes are never cacheable: do not even look them
    # up (a lookup puts concurrent requests for one URL on a waiting list,
    # which serialises long-polls). Streams (@STREAMS@): `pass` keeps Varnish
    # in the middle, streaming the response as it comes; `pipe` turns the
    # browser's connection into a raw tunnel to tandem. Polls and publishes:
    # `pass` (a piped connection would carry the browser's next requests
    # through the tunnel, unseen by VCL).
    if (req.url ~ "^/ch/[^/]+/(sse|multipart|mixed|iframe)") {
        return (@STREAMS@);
    }
    if (req.url ~ "^/ch/") {
        return (pass);
    }
}

sub vcl_backend_response {
    # Hand each piece of a response to the client as it arrives (the
    # default since Varnish 4, stated here because a stream needs it).
    set beresp.do_stream = true;
    # Never compress or cache a stream: Varnish only gzips when told to, but
    # a rule elsewhere that sets do_gzip would buffer nothing yet change the
    # framing browsers see.
    if (beresp.http.Content-Type ~ "^(text/event-stream|multipart/)") {
        set beresp.do_gzip = false;
        set beresp.uncacheable = true;
        return (deliver);
    }
}

sub vcl_pipe {
    # A piped connection carries one request to tandem and then whatever the
    # client sends; ask tandem to close after it so a second request on
    # that connection is not sent through a tunnel VCL never sees.
    set bereq.http.Connection = "close";
}
