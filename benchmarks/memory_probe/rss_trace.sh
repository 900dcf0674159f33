#!/bin/bash
# sample the RSS of a command every 5 s, with the "N/M requests" of its progress lines
# usage: rss_sample.sh OUTLOG cmd...  -> samples RSS of the process tree every 5 s
out=$1; shift
"$@" > $out.cmd.log 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null; do
  rss=$(ps -o rss= -p $pid 2>/dev/null); echo "$(date +%s) $rss $(tail -c 200 $out.cmd.log | tr '\r' '\n' | grep -o '[0-9]*/[0-9]* requests' | tail -1)" >> $out; sleep 5
done
