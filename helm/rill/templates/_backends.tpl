{{/*
How the pods reach Kafka, Cassandra/ScyllaDB and Redis. One table,
"rill.backendsOf", says which of the three each workload talks to; its
environment (RILL_* settings), its CA files and its NetworkPolicy's egress
(networkpolicy.yaml) all follow that table. Credentials only ever come from
Secrets the operator made (secretKeyRef), so no password is written in the
values, a ConfigMap or the rendered manifests; CA certificates are mounted
read-only from a Secret or ConfigMap at /etc/rill/tls/<backend>/ca.crt.
*/}}

{{/* The backends a workload talks to, comma separated; called with the
workload's component name. The edge reads memberships from the store. */}}
{{- define "rill.backendsOf" -}}
{{- $table := dict "edge" "kafka,cassandra,redis" "api" "kafka,cassandra,redis" "persist" "kafka,cassandra" "sequencer" "kafka" "create-topics" "kafka" "apply-schema" "cassandra" }}
{{- required (printf "no backends known for %q" .) (get $table .) }}
{{- end }}

{{/* Where a backend's CA certificates are mounted; called with its name. */}}
{{- define "rill.caDir" -}}
/etc/rill/tls/{{ . }}
{{- end }}

{{/* "true" when backend .backend (kafka, cassandra, redis) has TLS on
with a CA of its own; fails on a CA given twice. dict root, backend. */}}
{{- define "rill.hasCa" -}}
{{- $tls := (get .root.Values .backend).tls }}
{{- if and $tls.ca.secret $tls.ca.configMap }}
{{- fail (printf "%s.tls.ca: name a Secret or a ConfigMap, not both" .backend) }}
{{- end }}
{{- if and $tls.enabled (or $tls.ca.secret $tls.ca.configMap) }}true{{ end }}
{{- end }}

{{/* The RILL_* settings of every backend of a workload; dict root,
component. */}}
{{- define "rill.backendEnv" -}}
{{- $root := .root }}
{{- range splitList "," (include "rill.backendsOf" .component) }}
{{ include (printf "rill.%sEnv" .) $root | trim }}
{{- end }}
{{- end }}

{{/* The CA volumes of a workload's backends (none: empty); dict root,
component. */}}
{{- define "rill.caVolumes" -}}
{{- $root := .root }}
{{- range splitList "," (include "rill.backendsOf" .component) }}
{{- if include "rill.hasCa" (dict "root" $root "backend" .) }}
{{- $ca := (get $root.Values .).tls.ca }}
- name: {{ . }}-ca
  {{- if $ca.secret }}
  secret:
    secretName: {{ $ca.secret }}
  {{- else }}
  configMap:
    name: {{ $ca.configMap }}
  {{- end }}
    defaultMode: 0444
    items:
      - key: {{ $ca.key }}
        path: ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* The mounts of those volumes; dict root, component. */}}
{{- define "rill.caMounts" -}}
{{- $root := .root }}
{{- range splitList "," (include "rill.backendsOf" .component) }}
{{- if include "rill.hasCa" (dict "root" $root "backend" .) }}
- name: {{ . }}-ca
  mountPath: {{ include "rill.caDir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* Kafka's security.protocol from kafka.tls.enabled and kafka.sasl. */}}
{{- define "rill.kafkaProtocol" -}}
{{- $k := .Values.kafka }}
{{- if $k.sasl.existingSecret }}sasl_{{ end }}{{ if $k.tls.enabled }}ssl{{ else }}plaintext{{ end }}
{{- end }}

{{/* RILL_KAFKA__*: brokers, topics, and the link's TLS and SASL user. */}}
{{- define "rill.kafkaEnv" -}}
{{- $k := .Values.kafka }}
- name: RILL_KAFKA__BROKERS
  value: {{ required "kafka.brokers is required" $k.brokers | quote }}
- name: RILL_KAFKA__MESSAGE_TOPIC
  value: {{ $k.topics.messages | quote }}
- name: RILL_KAFKA__SEQUENCED_TOPIC
  value: {{ $k.topics.sequenced | quote }}
- name: RILL_KAFKA__DIRECTORY_TOPIC
  value: {{ $k.topics.directory | quote }}
- name: RILL_KAFKA__PUSH_TOPIC
  value: {{ $k.topics.push | quote }}
- name: RILL_KAFKA__PRESENCE_TOPIC
  value: {{ $k.topics.presence | quote }}
- name: RILL_KAFKA__PARTITIONS
  value: {{ $k.partitions | quote }}
- name: RILL_KAFKA__IDEMPOTENCE
  value: {{ $k.idempotence | quote }}
{{- $protocol := include "rill.kafkaProtocol" . }}
{{- if ne $protocol "plaintext" }}
- name: RILL_KAFKA__SECURITY_PROTOCOL
  value: {{ $protocol | quote }}
{{- end }}
{{- if include "rill.hasCa" (dict "root" . "backend" "kafka") }}
- name: RILL_KAFKA__SSL_CA_FILE
  value: {{ printf "%s/ca.crt" (include "rill.caDir" "kafka") | quote }}
{{- end }}
{{- with $k.sasl }}
{{- if .existingSecret }}
- name: RILL_KAFKA__SASL_MECHANISM
  value: {{ .mechanism | quote }}
- name: RILL_KAFKA__SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
- name: RILL_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* How the create-topics Job makes the topics: copies and
min.insync.replicas (the services do not read these). */}}
{{- define "rill.topicsEnv" -}}
{{- $k := .Values.kafka }}
{{- if gt (int $k.minInsyncReplicas) (int $k.replicationFactor) }}
{{- fail (printf "kafka.minInsyncReplicas (%v) is above kafka.replicationFactor (%v): no write could be acknowledged" $k.minInsyncReplicas $k.replicationFactor) }}
{{- end }}
- name: RILL_KAFKA__REPLICATION_FACTOR
  value: {{ $k.replicationFactor | quote }}
- name: RILL_KAFKA__MIN_INSYNC_REPLICAS
  value: {{ $k.minInsyncReplicas | quote }}
{{- end }}

{{/* RILL_STORE__CASSANDRA__*: nodes, keyspace, credentials, TLS. */}}
{{- define "rill.cassandraEnv" -}}
{{- $c := .Values.cassandra }}
{{- if not $c.contactPoints }}
{{- fail "cassandra.contactPoints is required: the services share one store, and an embedded SQLite file cannot be shared between pods" }}
{{- end }}
{{- if and $c.tls.enabled (not (include "rill.hasCa" (dict "root" . "backend" "cassandra"))) }}
{{- fail "cassandra.tls.enabled needs cassandra.tls.ca.secret or cassandra.tls.ca.configMap: the services turn TLS to Cassandra on with its CA file" }}
{{- end }}
- name: RILL_STORE__CASSANDRA__CONTACT_POINTS
  value: {{ join "," $c.contactPoints | quote }}
- name: RILL_STORE__CASSANDRA__KEYSPACE
  value: {{ $c.keyspace | quote }}
- name: RILL_STORE__CASSANDRA__REPLICATION_FACTOR
  value: {{ $c.replicationFactor | quote }}
{{- if $c.localDatacenter }}
- name: RILL_STORE__CASSANDRA__LOCAL_DATACENTER
  value: {{ $c.localDatacenter | quote }}
{{- end }}
{{- if $c.auth.existingSecret }}
- name: RILL_STORE__CASSANDRA__USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $c.auth.existingSecret }}
      key: {{ $c.auth.usernameKey }}
- name: RILL_STORE__CASSANDRA__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $c.auth.existingSecret }}
      key: {{ $c.auth.passwordKey }}
{{- end }}
{{- if $c.tls.enabled }}
- name: RILL_STORE__CASSANDRA__TLS_CA_FILE
  value: {{ printf "%s/ca.crt" (include "rill.caDir" "cassandra") | quote }}
{{- end }}
{{- end }}

{{/* RILL_REDIS__*. The services read the user and password from the URLs
only (rediss://user:password@host:port), so with redis.auth the URLs are
put together in the pod: REDIS_USERNAME and REDIS_PASSWORD come from the
Secret, and Kubernetes replaces $(REDIS_PASSWORD) in RILL_REDIS__URLS
with the value (a variable defined before it in the list). */}}
{{- define "rill.redisEnv" -}}
{{- $r := .Values.redis }}
{{- if $r.existingSecret }}
{{- if $r.auth.existingSecret }}
{{- fail "redis.auth.existingSecret goes with redis.urls: URLs from redis.existingSecret carry their own credentials" }}
{{- end }}
- name: RILL_REDIS__URLS
  valueFrom:
    secretKeyRef:
      name: {{ $r.existingSecret }}
      key: {{ $r.urlsKey }}
{{- else }}
{{- $login := "" }}
{{- with $r.auth }}
{{- if .existingSecret }}
{{- if .usernameKey }}
{{- $login = "$(REDIS_USERNAME)" }}
- name: REDIS_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .usernameKey }}
{{- end }}
{{- $login = printf "%s:$(REDIS_PASSWORD)@" $login }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .passwordKey }}
{{- end }}
{{- end }}
{{- $urls := list }}
{{- range (required "redis.urls (or redis.existingSecret) is required" $r.urls) }}
{{- $address := regexReplaceAll "^rediss?://" . "" }}
{{- if contains "://" $address }}
{{- fail (printf "redis.urls: %q is not a redis:// or rediss:// URL" .) }}
{{- end }}
{{- if contains "@" $address }}
{{- fail (printf "redis.urls: %q carries credentials: put the password in a Secret and name it in redis.auth.existingSecret (or all the URLs in redis.existingSecret)" (regexReplaceAll "//[^@]*@" . "//***@")) }}
{{- end }}
{{- $scheme := ternary "rediss" "redis" (or $r.tls.enabled (hasPrefix "rediss://" .)) }}
{{- $urls = append $urls (printf "%s://%s%s" $scheme $login $address) }}
{{- end }}
- name: RILL_REDIS__URLS
  value: {{ join "," $urls | quote }}
{{- end }}
- name: RILL_REDIS__KEY_PREFIX
  value: {{ $r.keyPrefix | quote }}
{{- if include "rill.hasCa" (dict "root" . "backend" "redis") }}
- name: RILL_REDIS__CA_FILE
  value: {{ printf "%s/ca.crt" (include "rill.caDir" "redis") | quote }}
{{- end }}
{{- end }}

{{/* The TCP ports a workload's egress to a backend opens, comma separated:
networkPolicy.<backend>.ports, else the ports of the backend's addresses
in the values (the backend's usual port where an address has none, or
where the addresses are in a Secret). dict root, backend (kafka,
cassandra, redis, otlp). */}}
{{- define "rill.backendPorts" -}}
{{- $root := .root }}
{{- $given := (get $root.Values.networkPolicy .backend).ports }}
{{- $ports := list }}
{{- if $given }}
{{- $ports = $given }}
{{- else if eq .backend "kafka" }}
{{- range splitList "," $root.Values.kafka.brokers }}
{{- $ports = append $ports (include "rill.portOf" (dict "address" (trim .) "default" 9092)) }}
{{- end }}
{{- else if eq .backend "cassandra" }}
{{- range $root.Values.cassandra.contactPoints }}
{{- $ports = append $ports (include "rill.portOf" (dict "address" . "default" 9042)) }}
{{- end }}
{{- else if eq .backend "redis" }}
{{- if $root.Values.redis.existingSecret }}
{{- $ports = list 6379 }}
{{- else }}
{{- range $root.Values.redis.urls }}
{{- $address := regexReplaceAll "/.*$" (regexReplaceAll "^rediss?://" . "") "" }}
{{- $ports = append $ports (include "rill.portOf" (dict "address" $address "default" 6379)) }}
{{- end }}
{{- end }}
{{- else if eq .backend "otlp" }}
{{- $url := urlParse $root.Values.otlpEndpoint }}
{{- $ports = append $ports (include "rill.portOf" (dict "address" $url.host "default" (ternary 443 80 (eq $url.scheme "https")))) }}
{{- end }}
{{- $ports | uniq | join "," }}
{{- end }}

{{/* The port of "host:port" (or "[v6]:port"), else .default. */}}
{{- define "rill.portOf" -}}
{{- $m := regexFind ":[0-9]+$" .address }}
{{- if $m }}{{ trimPrefix ":" $m }}{{ else }}{{ .default }}{{ end }}
{{- end }}
