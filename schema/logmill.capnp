# logmill's native wire contract (public; see README "Wire format").
#
# A TCP client sends frames: a 4-byte big-endian length, then that many bytes holding one
# Cap'n Proto message in the standard unpacked serialization, whose root is a ClientFrame.
# The server answers with frames of the same shape whose root is a ServerFrame.
#
# Compatibility rules: fields are only ever added (new ordinals), never renumbered or removed.

@0xa783194140a11ab8;

# Severity. One scale that covers Python logging, syslog and OpenTelemetry:
#
#   logmill    Python             syslog (severity)   OpenTelemetry SeverityNumber
#   trace      -                  -                   1-4   TRACE
#   debug      DEBUG (10)         7 debug             5-8   DEBUG
#   info       INFO (20)          6 info              9-12  INFO
#   notice     -                  5 notice            -
#   warning    WARNING (30)       4 warning           13-16 WARN
#   error      ERROR (40)         3 err               17-20 ERROR
#   critical   CRITICAL (50)      2 crit              21-24 FATAL
#   alert      -                  1 alert             -
#   emergency  -                  0 emerg             -
#
# `unspecified` (0) is what an old client that never sets the field sends; it is stored as `info`.
enum Level {
  unspecified @0;
  trace @1;
  debug @2;
  info @3;
  notice @4;
  warning @5;
  error @6;
  critical @7;
  alert @8;
  emergency @9;
}

struct Field {
  key @0 :Text;
  value @1 :Text;
}

struct LogRecord {
  # Unix time in nanoseconds at the source; 0 means "stamp it when the server receives it".
  timestampNs @0 :UInt64;
  level @1 :Level;
  # The body is either a plain string or a JSON object (as text). A `json` body that does not
  # parse as JSON is stored as text with the parse-error flag set.
  body :union {
    message @2 :Text;
    json @3 :Text;
  }
  logger @4 :Text;
  host @5 :Text;
  service @6 :Text;
  module @7 :Text;
  file @8 :Text;
  line @9 :UInt32;
  function @10 :Text;
  processId @11 :UInt32;
  processName @12 :Text;
  threadId @13 :UInt64;
  threadName @14 :Text;
  stackTrace @15 :Text;
  fields @16 :List(Field);
}

# Optional; if sent, it must be the first frame of the connection.
struct Hello {
  app @0 :Text;       # application name, stored on every record of this connection
  instance @1 :Text;  # instance of the application (host name, pod name, ...)
  token @2 :Text;     # application token (`logmill token issue`): the connection's app; see --auth
  wantAcks @3 :Bool;  # ask for ServerFrame.ack as records are written
}

struct ClientFrame {
  union {
    record @0 :LogRecord;
    batch @1 :List(LogRecord);
    hello @2 :Hello;
  }
}

struct Ack {
  count @0 :UInt64;    # records of this connection written so far (cumulative)
  lastSeq @1 :UInt64;  # sequence number of the last of them
}

enum ErrorCode {
  frameTooLarge @0;   # length prefix over --max-frame; the connection is closed after this frame
  undecodable @1;     # the payload is not a ClientFrame; the frame is skipped, the connection goes on
  helloNotFirst @2;   # a hello after records; ignored, the connection goes on
  shuttingDown @3;    # the server is stopping; records already acked are safe
  slowReader @4;      # the client does not read its acks; the connection is closed
  idleTimeout @5;     # nothing received for --idle-timeout; the connection is closed
  unauthorized @6;    # the token was refused (or none was sent under --auth required); closed
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;
}

struct Welcome {
  server @0 :Text;     # the server's --name
  version @1 :Text;    # logmill version
  maxFrame @2 :UInt32; # the largest payload the server accepts, in bytes
}

struct ServerFrame {
  union {
    ack @0 :Ack;
    error @1 :Error;
    welcome @2 :Welcome;
  }
}
