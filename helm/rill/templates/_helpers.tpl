{{/*
Shared pieces of the Rill chart. Every service's pod is one template,
"rill.podTemplate", in the Deployments of edge, api and persist
("rill.deployment") and the sequencer's StatefulSet ("rill.statefulset"),
each called with a dict:
  root       the top-level context ($)
  component  edge | api | persist | sequencer
  values     .Values.<component>
  env        extra EnvVar list of that component (already rendered YAML);
             the settings of its backends come from _backends.tpl
  grace      terminationGracePeriodSeconds
  preStop    seconds to sleep before SIGTERM (0: no preStop)
  readiness  periodSeconds of the readiness probe
*/}}

{{- define "rill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rill.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of a component's objects: <fullname>-<component>. */}}
{{- define "rill.componentName" -}}
{{- printf "%s-%s" (include "rill.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rill.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rill
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* Selector labels of a component; dict root, component. */}}
{{- define "rill.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rill.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rill.componentLabels" -}}
{{ include "rill.labels" .root }}
{{ include "rill.selectorLabels" . }}
{{- end }}

{{/* Image of a component; dict root, component (edge|api|persist|sequencer|admin). */}}
{{- define "rill.image" -}}
{{- $v := .root.Values.image }}
{{- $tag := default .root.Chart.AppVersion $v.tag }}
{{- if $v.registry }}
{{- printf "%s/rill-%s:%s" (trimSuffix "/" $v.registry) .component $tag }}
{{- else }}
{{- printf "rill-%s:%s" .component $tag }}
{{- end }}
{{- end }}

{{/* The Secret that holds the cookie key. */}}
{{- define "rill.sessionSecret" -}}
{{- default (include "rill.fullname" .) .Values.session.existingSecret }}
{{- end }}

{{/* Settings every service reads: listen address, logs, traces. */}}
{{- define "rill.commonEnv" -}}
- name: RILL_LISTEN
  value: {{ printf "0.0.0.0:%v" .values.port | quote }}
- name: RILL_TELEMETRY__LOG_FORMAT
  value: {{ .root.Values.logFormat | quote }}
- name: RILL_TELEMETRY__LOG_FILTER
  value: {{ .root.Values.logFilter | quote }}
{{- if .root.Values.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .root.Values.otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "rill-%s" .component | quote }}
{{- end }}
{{- end }}

{{/* Prometheus scrape annotations of a pod; dict root, values. */}}
{{- define "rill.podAnnotations" -}}
{{- $a := dict }}
{{- if .root.Values.metrics.scrapeAnnotations }}
{{- $a = dict "prometheus.io/scrape" "true" "prometheus.io/port" (toString .values.port) "prometheus.io/path" "/metrics" }}
{{- end }}
{{- $a = merge (deepCopy (default (dict) .values.podAnnotations)) $a }}
{{- if $a }}{{ toYaml $a }}{{ end }}
{{- end }}

{{/* A service's Deployment: see the dict at the top of this file. */}}
{{- define "rill.deployment" -}}
{{- $v := .values }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "rill.componentName" . }}
  labels:
    {{- include "rill.componentLabels" . | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "rill.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # A new pod is ready before an old one stops (an edge being replaced
      # drains its sessions onto the others).
      maxSurge: 1
      maxUnavailable: 0
  template:
    {{- include "rill.podTemplate" . | nindent 4 }}
{{- end }}

{{/* A StatefulSet of a service whose pods need names that last across
restarts (the sequencer: its transactional id is the pod's name). Pods
start and stop in parallel; a rolling update replaces one pod at a time,
the old one gone before its successor of the same name starts. */}}
{{- define "rill.statefulset" -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include "rill.componentName" . }}
  labels:
    {{- include "rill.componentLabels" . | nindent 4 }}
spec:
  replicas: {{ .values.replicas }}
  revisionHistoryLimit: 5
  serviceName: {{ include "rill.componentName" . }}
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      {{- include "rill.selectorLabels" . | nindent 6 }}
  updateStrategy:
    type: RollingUpdate
  template:
    {{- include "rill.podTemplate" . | nindent 4 }}
{{- end }}

{{/* The pod template of a service: see the dict at the top of this file. */}}
{{- define "rill.podTemplate" -}}
{{- $root := .root }}
{{- $v := .values }}
metadata:
  labels:
    {{- include "rill.selectorLabels" . | nindent 4 }}
  {{- with include "rill.podAnnotations" (dict "root" $root "values" $v) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
spec:
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .grace }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ .component }}
      image: {{ include "rill.image" . | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      ports:
        - name: http
          containerPort: {{ $v.port }}
          protocol: TCP
      env:
        {{- include "rill.commonEnv" . | nindent 8 }}
        {{- include "rill.backendEnv" . | trim | nindent 8 }}
        {{- with .env | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $v.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with include "rill.caMounts" . | trim }}
      volumeMounts:
        {{- . | nindent 8 }}
      {{- end }}
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 10
        timeoutSeconds: 2
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: {{ .readiness }}
        timeoutSeconds: 1
        failureThreshold: 2
        successThreshold: 1
      {{- if gt (int .preStop) 0 }}
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .preStop }}
      {{- end }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
  {{- with include "rill.caVolumes" . | trim }}
  volumes:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $v.spreadOverNodes }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "rill.selectorLabels" . | nindent 10 }}
  {{- end }}
{{- end }}

{{/* Service, PodDisruptionBudget and HPA of a component; dict root,
component, values, metrics (rendered HPA metrics list), headless (the
Service of a StatefulSet: no cluster IP, a DNS name per pod). */}}
{{- define "rill.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "rill.componentName" . }}
  labels:
    {{- include "rill.componentLabels" . | nindent 4 }}
spec:
  type: ClusterIP
  {{- if .headless }}
  clusterIP: None
  {{- end }}
  selector:
    {{- include "rill.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .values.port }}
      targetPort: http
      protocol: TCP
{{- end }}

{{- define "rill.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "rill.componentName" . }}
  labels:
    {{- include "rill.componentLabels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "rill.selectorLabels" . | nindent 6 }}
{{- end }}

{{- define "rill.cpuMetric" -}}
- type: Resource
  resource:
    name: cpu
    target:
      type: Utilization
      averageUtilization: {{ .values.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}

{{- define "rill.hpa" -}}
{{- $a := .values.autoscaling }}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) }}
{{- fail (printf "%s.autoscaling.minReplicas (%v) is above maxReplicas (%v)" .component $a.minReplicas $a.maxReplicas) }}
{{- end }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "rill.componentName" . }}
  labels:
    {{- include "rill.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "rill.componentName" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    {{- .metrics | nindent 4 }}
  {{- with .behavior }}
  behavior:
    {{- . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* A Job run by Helm before install and upgrade; dict root, component
(job name suffix, and its row in "rill.backendsOf"), args, env (more
EnvVars besides its backends'). */}}
{{- define "rill.job" -}}
{{- $root := .root }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "rill.componentName" . }}
  labels:
    {{- include "rill.componentLabels" . | nindent 4 }}
  annotations:
    # Before the services start (and before every upgrade rolls them);
    # deleted once it succeeded, kept for its logs when it failed.
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-5"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ $root.Values.jobs.backoffLimit }}
  activeDeadlineSeconds: {{ $root.Values.jobs.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "rill.selectorLabels" . | nindent 8 }}
    spec:
      restartPolicy: Never
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: admin
          image: {{ include "rill.image" (dict "root" $root "component" "admin") | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [{{ .args | quote }}]
          env:
            {{- include "rill.backendEnv" . | trim | nindent 12 }}
            {{- with .env | trim }}
            {{- . | nindent 12 }}
            {{- end }}
          {{- with include "rill.caMounts" . | trim }}
          volumeMounts:
            {{- . | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml $root.Values.jobs.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
      {{- with include "rill.caVolumes" . | trim }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}
{{- end }}
