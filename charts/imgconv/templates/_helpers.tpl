{{/*
Names, labels, images, security contexts, connection settings and the checks of inconsistent
values, shared by every template. One definition each: templates only include these.
*/}}

{{- define "imgconv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-imgconv", or the release name alone when it already contains the chart name. */}}
{{- define "imgconv.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: (dict "root" $ "component" "api"). */}}
{{- define "imgconv.componentName" -}}
{{- printf "%s-%s" (include "imgconv.fullname" .root | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" -}}
{{- end -}}

{{- define "imgconv.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What selects one component's pods: (dict "root" $ "component" "api"). Never changes. */}}
{{- define "imgconv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imgconv.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object's labels: (dict "root" $ "component" "api"). */}}
{{- define "imgconv.labels" -}}
{{ include "imgconv.selectorLabels" . }}
app.kubernetes.io/part-of: imgconv
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "imgconv.chart" .root }}
{{- end -}}

{{/* An image reference: (dict "root" $ "image" .Values.images.imgconv). */}}
{{- define "imgconv.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "imgconv.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod Security Standards "restricted" for a container: no privilege escalation, no capability,
read-only root, RuntimeDefault seccomp, a non-root user. (dict "user" 10001 "group" 10001)
*/}}
{{- define "imgconv.containerSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .user }}
  runAsGroup: {{ .group }}
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* The same at pod level: (dict "user" 10001 "group" 10001 "fsGroup" 10001). */}}
{{- define "imgconv.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .user }}
  runAsGroup: {{ .group }}
  fsGroup: {{ .fsGroup }}
  fsGroupChangePolicy: OnRootMismatch
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* The pod-level security context of the chart's own images. */}}
{{- define "imgconv.appPodSecurityContext" -}}
{{- $p := .Values.podSecurityContext -}}
{{ include "imgconv.podSecurityContext" (dict "user" $p.runAsUser "group" $p.runAsGroup "fsGroup" $p.fsGroup) }}
{{- end -}}

{{- define "imgconv.appContainerSecurityContext" -}}
{{- $p := .Values.podSecurityContext -}}
{{ include "imgconv.containerSecurityContext" (dict "user" $p.runAsUser "group" $p.runAsGroup) }}
{{- end -}}

{{/* Shared pod-spec fields: host network (tests only), pull secrets. */}}
{{- define "imgconv.podCommon" -}}
{{- if .Values.hostNetwork }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
{{- include "imgconv.imagePullSecrets" . }}
{{- end -}}

{{/* Scheduling fields of a component: (dict "values" .Values.api). */}}
{{- define "imgconv.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* /tmp as an emptyDir, the one writable path of the imgconv images: (dict "size" "1Gi"). */}}
{{- define "imgconv.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .size }}
{{- end -}}

{{- define "imgconv.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* ------------------------------------------------------------------------------------- */}}
{{/* Secrets: names, and values generated once (lookup keeps what the cluster already has). */}}

{{- define "imgconv.secretKeySecretName" -}}
{{- .Values.secretKey.existingSecret | default (include "imgconv.componentName" (dict "root" . "component" "secret-key")) -}}
{{- end -}}

{{- define "imgconv.postgresSecretName" -}}
{{- .Values.postgres.auth.existingSecret | default (include "imgconv.componentName" (dict "root" . "component" "postgres")) -}}
{{- end -}}

{{- define "imgconv.redisSecretName" -}}
{{- .Values.redis.auth.existingSecret | default (include "imgconv.componentName" (dict "root" . "component" "redis")) -}}
{{- end -}}

{{- define "imgconv.rabbitmqSecretName" -}}
{{- .Values.rabbitmq.auth.existingSecret | default (include "imgconv.componentName" (dict "root" . "component" "rabbitmq")) -}}
{{- end -}}

{{/* The Secret holding the URLs of external services given as values. */}}
{{- define "imgconv.externalSecretName" -}}
{{- include "imgconv.componentName" (dict "root" . "component" "external") -}}
{{- end -}}

{{/*
A base64 value for key `key` of Secret `name`: the cluster's current one when the Secret
exists (so upgrades keep passwords that data on PVCs was initialised with), else a new random
one. (dict "root" $ "name" "x" "key" "password" "length" 32)
*/}}
{{- define "imgconv.generatedSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $existing (hasKey ($existing.data | default dict) .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum (int .length) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------------------------------- */}}
{{/* Connections: the env of every process that talks to Postgres, Redis and RabbitMQ.      */}}

{{- define "imgconv.postgresHost" -}}
{{- include "imgconv.componentName" (dict "root" . "component" "postgres") -}}
{{- end -}}

{{- define "imgconv.redisHost" -}}
{{- include "imgconv.componentName" (dict "root" . "component" "redis") -}}
{{- end -}}

{{- define "imgconv.rabbitmqHost" -}}
{{- include "imgconv.componentName" (dict "root" . "component" "rabbitmq") -}}
{{- end -}}

{{/*
IMGCONV_DATABASE_URL, IMGCONV_REDIS_URL, IMGCONV_BROKER_URL and IMGCONV_SECRET_KEY. Bundled
services: the password comes from their Secret and Kubernetes expands $(VAR) into the URL
(generated passwords are alphanumeric, so they need no URL escaping). External ones: the whole
URL comes from a Secret.
*/}}
{{- define "imgconv.connectionEnv" -}}
{{- $v := .Values -}}
- name: IMGCONV_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "imgconv.secretKeySecretName" . }}
      key: {{ $v.secretKey.existingSecretKey }}
{{- if $v.postgres.enabled }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "imgconv.postgresSecretName" . }}
      key: {{ $v.postgres.auth.passwordKey }}
- name: IMGCONV_DATABASE_URL
  value: {{ printf "postgresql+psycopg://%s:$(POSTGRES_PASSWORD)@%s:5432/%s" $v.postgres.username (include "imgconv.postgresHost" .) $v.postgres.database | quote }}
{{- else }}
- name: IMGCONV_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.postgres.external.existingSecret | default (include "imgconv.externalSecretName" .) }}
      key: {{ $v.postgres.external.existingSecretKey }}
{{- end }}
{{- if $v.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "imgconv.redisSecretName" . }}
      key: {{ $v.redis.auth.passwordKey }}
- name: IMGCONV_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "imgconv.redisHost" .) | quote }}
{{- else }}
- name: IMGCONV_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.external.existingSecret | default (include "imgconv.externalSecretName" .) }}
      key: {{ $v.redis.external.existingSecretKey }}
{{- end }}
{{- if $v.rabbitmq.enabled }}
- name: RABBITMQ_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "imgconv.rabbitmqSecretName" . }}
      key: {{ $v.rabbitmq.auth.usernameKey }}
- name: RABBITMQ_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "imgconv.rabbitmqSecretName" . }}
      key: {{ $v.rabbitmq.auth.passwordKey }}
- name: IMGCONV_BROKER_URL
  value: {{ printf "amqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@%s:5672/%%2F" (include "imgconv.rabbitmqHost" .) | quote }}
{{- else }}
- name: IMGCONV_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.rabbitmq.external.existingSecret | default (include "imgconv.externalSecretName" .) }}
      key: {{ $v.rabbitmq.external.existingSecretKey }}
{{- end }}
{{- end -}}

{{/* envFrom of the settings ConfigMap. */}}
{{- define "imgconv.configEnvFrom" -}}
- configMapRef:
    name: {{ include "imgconv.componentName" (dict "root" . "component" "config") }}
{{- end -}}

{{/* The pod annotation that rolls pods when the settings change. */}}
{{- define "imgconv.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
{{- end -}}

{{/*
The migration container: `imgconv migrate` takes an advisory lock, so the Job and every pod's
init container can run it at once; whoever is second finds the schema at head and exits.
*/}}
{{- define "imgconv.migrateContainer" -}}
- name: migrate
  image: {{ include "imgconv.image" (dict "root" . "image" .Values.images.imgconv) }}
  imagePullPolicy: {{ .Values.images.imgconv.pullPolicy }}
  args: [migrate, --wait-seconds, {{ .Values.migrations.waitSeconds | quote }}]
  envFrom:
    {{- include "imgconv.configEnvFrom" . | nindent 4 }}
  env:
    {{- include "imgconv.connectionEnv" . | nindent 4 }}
  {{- include "imgconv.appContainerSecurityContext" . | nindent 2 }}
  resources:
    {{- toYaml .Values.migrations.resources | nindent 4 }}
  volumeMounts:
    {{- include "imgconv.tmpMount" . | nindent 4 }}
{{- end -}}

{{/* ------------------------------------------------------------------------------------- */}}
{{/* The operator's view of the broker.                                                     */}}

{{- define "imgconv.operatorManagementUrl" -}}
{{- if .Values.rabbitmq.enabled -}}
{{- printf "http://%s:15672" (include "imgconv.rabbitmqHost" .) -}}
{{- else -}}
{{- .Values.rabbitmq.external.managementUrl -}}
{{- end -}}
{{- end -}}

{{- define "imgconv.operatorAmqpUrl" -}}
{{- if .Values.rabbitmq.enabled -}}
{{- printf "amqp://%s:5672" (include "imgconv.rabbitmqHost" .) -}}
{{- else -}}
{{- .Values.rabbitmq.external.amqpUrl -}}
{{- end -}}
{{- end -}}

{{/* The Secret (name, usernameKey, passwordKey) with the management user the operator reads. */}}
{{- define "imgconv.operatorCredentials" -}}
{{- if .Values.rabbitmq.enabled -}}
{{- toYaml (dict "name" (include "imgconv.rabbitmqSecretName" .) "usernameKey" .Values.rabbitmq.auth.usernameKey "passwordKey" .Values.rabbitmq.auth.passwordKey) -}}
{{- else -}}
{{- toYaml .Values.rabbitmq.external.credentialsSecret -}}
{{- end -}}
{{- end -}}

{{/*
The Celery node name of a worker pod, with the pod name (its hostname) in it: the worker gets
it as --hostname (%h), the WorkerAutoscaler's drain addresses pods by it ({pod}).
*/}}
{{- define "imgconv.celeryNodeName" -}}
{{- printf "imgconv@%s" .host -}}
{{- end -}}

{{- define "imgconv.workerGracePeriod" -}}
{{- add .Values.config.taskHardTimeLimitSeconds .Values.worker.shutdownMarginSeconds -}}
{{- end -}}

{{/* ------------------------------------------------------------------------------------- */}}
{{/* Values that contradict each other stop the render here, with what to change.           */}}

{{- define "imgconv.validate" -}}
{{- $v := .Values -}}
{{- if and (not $v.postgres.enabled) (not $v.postgres.external.url) (not $v.postgres.external.existingSecret) -}}
{{- fail "postgres.enabled is false: set postgres.external.url or postgres.external.existingSecret (a Secret with the database URL)" -}}
{{- end -}}
{{- if and $v.postgres.external.url $v.postgres.external.existingSecret -}}
{{- fail "set only one of postgres.external.url and postgres.external.existingSecret" -}}
{{- end -}}
{{- if and (not $v.redis.enabled) (not $v.redis.external.url) (not $v.redis.external.existingSecret) -}}
{{- fail "redis.enabled is false: set redis.external.url or redis.external.existingSecret (a Secret with the Redis URL)" -}}
{{- end -}}
{{- if and $v.redis.external.url $v.redis.external.existingSecret -}}
{{- fail "set only one of redis.external.url and redis.external.existingSecret" -}}
{{- end -}}
{{- if and (not $v.rabbitmq.enabled) (not $v.rabbitmq.external.url) (not $v.rabbitmq.external.existingSecret) -}}
{{- fail "rabbitmq.enabled is false: set rabbitmq.external.url or rabbitmq.external.existingSecret (a Secret with the AMQP URL)" -}}
{{- end -}}
{{- if and $v.rabbitmq.external.url $v.rabbitmq.external.existingSecret -}}
{{- fail "set only one of rabbitmq.external.url and rabbitmq.external.existingSecret" -}}
{{- end -}}
{{- if and $v.operator.enabled (not $v.rabbitmq.enabled) -}}
{{- if not $v.rabbitmq.external.managementUrl -}}
{{- fail "operator.enabled with an external RabbitMQ: the operator reads queue depth from the management API, set rabbitmq.external.managementUrl (e.g. http://mq.example:15672) or operator.enabled=false" -}}
{{- end -}}
{{- if not $v.rabbitmq.external.credentialsSecret.name -}}
{{- fail "operator.enabled with an external RabbitMQ: set rabbitmq.external.credentialsSecret.name, a Secret with a management user the operator can log in with" -}}
{{- end -}}
{{- if and $v.operator.workerAutoscaler.drain (not $v.rabbitmq.external.amqpUrl) -}}
{{- fail "operator.workerAutoscaler.drain needs rabbitmq.external.amqpUrl (amqp://host:5672, no credentials) to reach the workers, or set drain=false" -}}
{{- end -}}
{{- end -}}
{{- $wa := $v.operator.workerAutoscaler -}}
{{- if and $v.operator.enabled (gt (int $wa.minReplicas) (int $wa.maxReplicas)) -}}
{{- fail (printf "operator.workerAutoscaler.minReplicas (%v) must not exceed maxReplicas (%v)" $wa.minReplicas $wa.maxReplicas) -}}
{{- end -}}
{{- if and $v.operator.enabled (not (kindIs "invalid" $wa.idleReplicas)) (gt (int $wa.idleReplicas) (int $wa.minReplicas)) -}}
{{- fail (printf "operator.workerAutoscaler.idleReplicas (%v) must not exceed minReplicas (%v)" $wa.idleReplicas $wa.minReplicas) -}}
{{- end -}}
{{- if and $v.api.autoscaling.enabled (gt (int $v.api.autoscaling.minReplicas) (int $v.api.autoscaling.maxReplicas)) -}}
{{- fail (printf "api.autoscaling.minReplicas (%v) must not exceed maxReplicas (%v)" $v.api.autoscaling.minReplicas $v.api.autoscaling.maxReplicas) -}}
{{- end -}}
{{- $tmpBytes := include "imgconv.sizeBytes" $v.api.tmpSizeLimit | float64 -}}
{{- $budgets := mulf (float64 $v.api.processes) (float64 $v.api.uploadBudgetBytes) -}}
{{- if lt $tmpBytes $budgets -}}
{{- fail (printf "api.tmpSizeLimit (%v) must hold api.processes (%v) x api.uploadBudgetBytes (%v) = %.0f bytes of spilled uploads, else a full budget gets the pod evicted: raise tmpSizeLimit or lower uploadBudgetBytes" $v.api.tmpSizeLimit $v.api.processes (int64 $v.api.uploadBudgetBytes) $budgets) -}}
{{- end -}}
{{- if le (int $v.config.taskHardTimeLimitSeconds) (int $v.config.taskSoftTimeLimitSeconds) -}}
{{- fail (printf "config.taskHardTimeLimitSeconds (%v) must exceed config.taskSoftTimeLimitSeconds (%v)" $v.config.taskHardTimeLimitSeconds $v.config.taskSoftTimeLimitSeconds) -}}
{{- end -}}
{{- if and $v.ingress.enabled $v.ingress.tls.enabled -}}
{{- $_ := required "ingress.tls.enabled needs ingress.tls.secretName (a Secret with tls.crt and tls.key)" $v.ingress.tls.secretName -}}
{{- $_ := required "ingress.tls.enabled needs ingress.host (a certificate is for a host name)" $v.ingress.host -}}
{{- end -}}
{{- if $v.httpRoute.enabled -}}
{{- if not $v.httpRoute.parentRefs -}}
{{- fail "httpRoute.enabled needs httpRoute.parentRefs, the Gateway to attach to, e.g. [{name: eg, namespace: gateway-system}]" -}}
{{- end -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.extraEgress) (or (not $v.postgres.enabled) (not $v.redis.enabled) (not $v.rabbitmq.enabled)) -}}
{{- fail "networkPolicy.enabled with an external Postgres, Redis or RabbitMQ: the pods could not reach it; allow it in networkPolicy.extraEgress (e.g. [{to: [{ipBlock: {cidr: 10.1.2.3/32}}], ports: [{port: 5432}]}])" -}}
{{- end -}}
{{- if and $v.hostNetwork $v.networkPolicy.enabled -}}
{{- fail "hostNetwork (for podman kube play only) and networkPolicy.enabled exclude each other: NetworkPolicies do not apply to host-network pods" -}}
{{- end -}}
{{- range $key, $_ := $v.config.extraEnv -}}
{{- if eq $key "IMGCONV_UPLOAD_BUDGET_BYTES" -}}
{{- fail "config.extraEnv.IMGCONV_UPLOAD_BUDGET_BYTES: set api.uploadBudgetBytes (the chart checks it against api.tmpSizeLimit)" -}}
{{- end -}}
{{- if has $key (list "IMGCONV_DATABASE_URL" "IMGCONV_REDIS_URL" "IMGCONV_BROKER_URL" "IMGCONV_SECRET_KEY") -}}
{{- fail (printf "config.extraEnv.%s: connections and the secret key come from Secrets (postgres/redis/rabbitmq .external, secretKey.existingSecret), not from plain settings" $key) -}}
{{- end -}}
{{- if has $key (list "IMGCONV_S3_ACCESS_KEY_ID" "IMGCONV_S3_SECRET_ACCESS_KEY" "IMGCONV_S3_ACCESS_KEY_ID_FILE" "IMGCONV_S3_SECRET_ACCESS_KEY_FILE") -}}
{{- fail (printf "config.extraEnv.%s: the S3 key pair comes from a Secret, storage.s3.existingSecret (mounted as files), not from plain settings" $key) -}}
{{- end -}}
{{- end -}}
{{- include "imgconv.validateStorage" . -}}
{{- include "imgconv.validateObservability" . -}}
{{- end -}}

{{/* Bytes of a size such as 2Gi (values.schema.json: a whole number with Ki, Mi, Gi or Ti). */}}
{{- define "imgconv.sizeBytes" -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 -}}
{{- $unit := regexFind "[KMGT]i$" . -}}
{{- mulf (float64 (trimSuffix $unit .)) (float64 (get $units $unit)) -}}
{{- end -}}

{{/* Storage values that contradict each other. */}}
{{- define "imgconv.validateStorage" -}}
{{- $v := .Values -}}
{{- $s := $v.storage -}}
{{- if and (eq $s.backend "s3") (not $s.seaweedfs.enabled) (not $s.s3.endpoint) -}}
{{- fail "storage.backend=s3 needs a store: set storage.s3.endpoint (e.g. https://s3.eu-west-1.amazonaws.com, with storage.s3.existingSecret or a web identity) or storage.seaweedfs.enabled=true for the bundled SeaweedFS" -}}
{{- end -}}
{{- if and $s.seaweedfs.enabled $s.s3.endpoint -}}
{{- fail "set only one of storage.seaweedfs.enabled (the bundled SeaweedFS) and storage.s3.endpoint (an external S3)" -}}
{{- end -}}
{{- if and $s.seaweedfs.enabled $s.s3.presignedDownloads -}}
{{- fail "storage.s3.presignedDownloads redirects clients to the S3 endpoint, but the bundled SeaweedFS is reachable only inside the cluster: turn it off, or use an external S3 the clients can reach" -}}
{{- end -}}
{{- if and $s.s3.serviceAccount.create $s.s3.serviceAccount.name -}}
{{- fail "set only one of storage.s3.serviceAccount.create and storage.s3.serviceAccount.name" -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled $s.s3.endpoint (not $v.networkPolicy.extraEgress) -}}
{{- fail "networkPolicy.enabled with an external S3 (storage.s3.endpoint): the API and worker pods could not reach it; allow it in networkPolicy.extraEgress (e.g. [{to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 443}]}])" -}}
{{- end -}}
{{- end -}}

{{/* Metrics, monitoring and tracing values that contradict each other. */}}
{{- define "imgconv.validateObservability" -}}
{{- $v := .Values -}}
{{- if and $v.monitoring.enabled $v.networkPolicy.enabled (not $v.networkPolicy.metricsFrom) -}}
{{- fail "monitoring.enabled with networkPolicy.enabled: Prometheus could not scrape the pods; allow it in networkPolicy.metricsFrom (e.g. [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}])" -}}
{{- end -}}
{{- if $v.tracing.enabled -}}
{{- $_ := required "tracing.enabled needs tracing.endpoint, the OTLP/HTTP collector (e.g. http://otel-collector.observability:4318)" $v.tracing.endpoint -}}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.extraEgress) -}}
{{- fail "tracing.enabled with networkPolicy.enabled: the API and worker pods could not reach the collector; allow it in networkPolicy.extraEgress (e.g. [{to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: observability}}}], ports: [{port: 4318}]}])" -}}
{{- end -}}
{{- end -}}
{{- range $key, $_ := $v.tracing.extraEnv -}}
{{- if has $key (list "OTEL_EXPORTER_OTLP_ENDPOINT" "OTEL_TRACES_SAMPLER" "OTEL_TRACES_SAMPLER_ARG" "OTEL_RESOURCE_ATTRIBUTES" "OTEL_POD_NAME") -}}
{{- fail (printf "tracing.extraEnv.%s is set by the chart from tracing.endpoint, .sampler, .samplerArg and .resourceAttributes: set it there" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------------------------------- */}}
{{/* NetworkPolicy pieces.                                                                  */}}

{{/* Egress to the cluster DNS (CoreDNS keeps the k8s-app: kube-dns label everywhere). */}}
{{- define "imgconv.netpol.dnsEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}

{{/* A peer: the pods of one component of this release. (dict "root" $ "component" "api") */}}
{{- define "imgconv.netpol.peer" -}}
- podSelector:
    matchLabels:
      {{- include "imgconv.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* Egress of the pods that use the data services: the bundled ones, and extraEgress. */}}
{{- define "imgconv.netpol.dataEgress" -}}
{{- include "imgconv.netpol.dnsEgress" . }}
{{- if .Values.postgres.enabled }}
- to:
    {{- include "imgconv.netpol.peer" (dict "root" . "component" "postgres") | nindent 4 }}
  ports:
    - {port: 5432, protocol: TCP}
{{- end }}
{{- if .Values.redis.enabled }}
- to:
    {{- include "imgconv.netpol.peer" (dict "root" . "component" "redis") | nindent 4 }}
  ports:
    - {port: 6379, protocol: TCP}
{{- end }}
{{- if .Values.rabbitmq.enabled }}
- to:
    {{- include "imgconv.netpol.peer" (dict "root" . "component" "rabbitmq") | nindent 4 }}
  ports:
    - {port: 5672, protocol: TCP}
{{- end }}
{{- if .Values.storage.seaweedfs.enabled }}
- to:
    {{- include "imgconv.netpol.peer" (dict "root" . "component" "seaweedfs") | nindent 4 }}
  ports:
    - {port: {{ (include "imgconv.seaweedfsPorts" . | fromYaml).s3 }}, protocol: TCP}
{{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Ingress from metrics scrapers on `port`, when networkPolicy.metricsFrom names them. */}}
{{- define "imgconv.netpol.metricsIngress" -}}
{{- with .root.Values.networkPolicy.metricsFrom }}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    - {port: {{ $.port }}, protocol: TCP}
{{- end }}
{{- end -}}

{{/* ------------------------------------------------------------------------------------- */}}
{{/* The data services' storage: a volumeClaimTemplate, or an emptyDir without persistence.  */}}

{{/* (dict "root" $ "component" "postgres" "persistence" .Values.postgres.persistence) */}}
{{- define "imgconv.volumeClaimTemplates" -}}
{{- if .persistence.enabled }}
volumeClaimTemplates:
  - metadata:
      name: data
      labels:
        {{- include "imgconv.selectorLabels" (dict "root" .root "component" .component) | nindent 8 }}
    spec:
      accessModes: [ReadWriteOnce]
      {{- with .persistence.storageClass }}
      storageClassName: {{ . }}
      {{- end }}
      resources:
        requests:
          storage: {{ .persistence.size }}
{{- end }}
{{- end -}}

{{- define "imgconv.dataEmptyDir" -}}
{{- if not .persistence.enabled }}
- name: data
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* The headless Service a StatefulSet names its pods through, plus the client Service. */}}
{{- define "imgconv.dataServices" -}}
{{- $component := dict "root" .root "component" .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "imgconv.componentName" $component }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "imgconv.labels" $component | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "imgconv.selectorLabels" $component | nindent 4 }}
  ports:
    {{- toYaml .ports | nindent 4 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "imgconv.componentName" $component }}-headless
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "imgconv.labels" $component | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "imgconv.selectorLabels" $component | nindent 4 }}
  ports:
    {{- toYaml .ports | nindent 4 }}
{{- end -}}

{{/* ------------------------------------------------------------------------------------- */}}
{{/* skaffold dev only (dev.pythonSync): the installed imgconv packages are copied into an   */}}
{{/* emptyDir that comes first on PYTHONPATH; skaffold syncs edited files into it and       */}}
{{/* restarts the container's process, which then imports them (the emptyDir outlives it).  */}}

{{- define "imgconv.pythonSync.initContainer" -}}
{{- if .Values.dev.pythonSync }}
- name: python-sync
  image: {{ include "imgconv.image" (dict "root" . "image" .Values.images.imgconv) }}
  imagePullPolicy: {{ .Values.images.imgconv.pullPolicy }}
  command:
    - python
    - -c
    - |
      import importlib.util, shutil
      for name in ("imgconv_core", "imgconv_api", "imgconv_worker", "imgconv_operator", "imgconv_cli"):
          spec = importlib.util.find_spec(name)
          if spec and spec.submodule_search_locations:
              shutil.copytree(spec.submodule_search_locations[0], f"/opt/imgconv-sync/{name}", dirs_exist_ok=True)
  {{- include "imgconv.appContainerSecurityContext" . | nindent 2 }}
  resources:
    {{- toYaml .Values.migrations.resources | nindent 4 }}
  volumeMounts:
    - name: python-sync
      mountPath: /opt/imgconv-sync
    {{- include "imgconv.tmpMount" . | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "imgconv.pythonSync.env" -}}
{{- if .Values.dev.pythonSync }}
- name: PYTHONPATH
  value: /opt/imgconv-sync
{{- end }}
{{- end -}}

{{- define "imgconv.pythonSync.mount" -}}
{{- if .Values.dev.pythonSync }}
- name: python-sync
  mountPath: /opt/imgconv-sync
{{- end }}
{{- end -}}

{{- define "imgconv.pythonSync.volume" -}}
{{- if .Values.dev.pythonSync }}
- name: python-sync
  emptyDir:
    sizeLimit: 256Mi
{{- end }}
{{- end -}}

{{/* ------------------------------------------------------------------------------------- */}}
{{/* Image storage (storage.*): the S3 settings, the credentials, the bundled SeaweedFS.    */}}

{{- define "imgconv.seaweedfsHost" -}}
{{- include "imgconv.componentName" (dict "root" . "component" "seaweedfs") -}}
{{- end -}}

{{/* The bundled SeaweedFS's ports: one process serves them all. */}}
{{- define "imgconv.seaweedfsPorts" -}}
{{- toYaml (dict "s3" 8333 "master" 9333 "masterGrpc" 19333 "volume" 8080 "volumeGrpc" 18080 "filer" 8888 "filerGrpc" 18888) -}}
{{- end -}}

{{/*
Whether the pods get S3 settings: S3 is the backend, or S3 is still configured after a switch
back to postgres (jobs stored there stay downloadable). "true" or empty.
*/}}
{{- define "imgconv.s3Configured" -}}
{{- $s := .Values.storage -}}
{{- if or (eq $s.backend "s3") $s.seaweedfs.enabled $s.s3.endpoint -}}true{{- end -}}
{{- end -}}

{{- define "imgconv.s3Endpoint" -}}
{{- if .Values.storage.seaweedfs.enabled -}}
{{- printf "http://%s:%v" (include "imgconv.seaweedfsHost" .) (include "imgconv.seaweedfsPorts" . | fromYaml).s3 -}}
{{- else -}}
{{- .Values.storage.s3.endpoint -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the S3 key pair; empty when the pods use their own identity (IRSA). */}}
{{- define "imgconv.s3SecretName" -}}
{{- if .Values.storage.s3.existingSecret -}}
{{- .Values.storage.s3.existingSecret -}}
{{- else if .Values.storage.seaweedfs.enabled -}}
{{- include "imgconv.componentName" (dict "root" . "component" "seaweedfs") -}}
{{- end -}}
{{- end -}}

{{/* Where the API and worker pods find the key pair (files: a rotated Secret is re-read). */}}
{{- define "imgconv.s3CredentialsDir" -}}/var/run/secrets/imgconv-s3{{- end -}}

{{/* The IMGCONV_S3_* settings of the ConfigMap, as a dict (empty when S3 is not configured). */}}
{{- define "imgconv.storageSettings" -}}
{{- $s3 := .Values.storage.s3 -}}
{{- $settings := dict "IMGCONV_STORAGE" .Values.storage.backend -}}
{{- if include "imgconv.s3Configured" . -}}
{{- $_ := set $settings "IMGCONV_S3_ENDPOINT_URL" (include "imgconv.s3Endpoint" .) -}}
{{- $_ := set $settings "IMGCONV_S3_BUCKET" $s3.bucket -}}
{{- $_ := set $settings "IMGCONV_S3_REGION" $s3.region -}}
{{- $_ := set $settings "IMGCONV_S3_PATH_STYLE" (toString (or $s3.pathStyle .Values.storage.seaweedfs.enabled)) -}}
{{- $_ := set $settings "IMGCONV_S3_PREFIX" $s3.prefix -}}
{{- $_ := set $settings "IMGCONV_S3_PRESIGNED_DOWNLOADS" (toString $s3.presignedDownloads) -}}
{{- $_ := set $settings "IMGCONV_S3_PRESIGN_EXPIRES_SECONDS" (toString (int64 $s3.presignExpiresSeconds)) -}}
{{- $_ := set $settings "IMGCONV_S3_ORPHAN_GRACE_SECONDS" (toString $s3.orphanGraceSeconds) -}}
{{- end -}}
{{- toYaml $settings -}}
{{- end -}}

{{/* The key pair's volume of the API and worker pods (read-only, only the two keys). */}}
{{- define "imgconv.s3CredentialsVolume" -}}
{{- with include "imgconv.s3SecretName" . }}
- name: s3-credentials
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - {key: {{ $.Values.storage.s3.accessKeyIdKey }}, path: access-key-id}
      - {key: {{ $.Values.storage.s3.secretAccessKeyKey }}, path: secret-access-key}
{{- end }}
{{- end -}}

{{/* The env that points at them, beside the mount (containers without it get neither). */}}
{{- define "imgconv.s3CredentialsEnv" -}}
{{- if include "imgconv.s3SecretName" . }}
- name: IMGCONV_S3_ACCESS_KEY_ID_FILE
  value: {{ include "imgconv.s3CredentialsDir" . }}/access-key-id
- name: IMGCONV_S3_SECRET_ACCESS_KEY_FILE
  value: {{ include "imgconv.s3CredentialsDir" . }}/secret-access-key
{{- end }}
{{- end -}}

{{- define "imgconv.s3CredentialsMount" -}}
{{- if include "imgconv.s3SecretName" . }}
- name: s3-credentials
  mountPath: {{ include "imgconv.s3CredentialsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The ServiceAccount of the API and worker pods: a web identity for S3, else none. */}}
{{- define "imgconv.storageServiceAccountName" -}}
{{- $sa := .Values.storage.s3.serviceAccount -}}
{{- if $sa.create -}}
{{- include "imgconv.componentName" (dict "root" . "component" "storage") -}}
{{- else -}}
{{- $sa.name -}}
{{- end -}}
{{- end -}}

{{/*
The pod fields that follow from it: with a web identity the token must be mounted (the cloud's
webhook projects its own from the ServiceAccount), otherwise none is.
*/}}
{{- define "imgconv.storageServiceAccount" -}}
{{- with include "imgconv.storageServiceAccountName" . }}
serviceAccountName: {{ . }}
automountServiceAccountToken: true
{{- else }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}

{{/* ------------------------------------------------------------------------------------- */}}
{{/* Metrics, monitoring and traces.                                                        */}}

{{/*
The scrape job of a component: its object name, with "imgconv" in it whatever the release is
called (the ImgconvTargetDown rule selects up{job=~".*imgconv.*"}). (dict "root" $ "component" "api")
*/}}
{{- define "imgconv.metricsJob" -}}
{{- $name := include "imgconv.componentName" . -}}
{{- if contains "imgconv" $name -}}
{{- $name -}}
{{- else -}}
{{- printf "imgconv-%s" $name -}}
{{- end -}}
{{- end -}}

{{/* The labels of the monitors and the rule: the chart's plus the Prometheus' selector. */}}
{{- define "imgconv.monitoringLabels" -}}
{{ include "imgconv.labels" . }}
{{- with .root.Values.monitoring.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* One scrape endpoint of a monitor: (dict "root" $ "component" "api" "port" "http"). */}}
{{- define "imgconv.scrapeEndpoint" -}}
{{- $m := .root.Values.monitoring -}}
- port: {{ .port }}
  path: /metrics
  scheme: http
  {{- with $m.interval }}
  interval: {{ . }}
  {{- end }}
  {{- with $m.scrapeTimeout }}
  scrapeTimeout: {{ . }}
  {{- end }}
  relabelings:
    - action: replace
      targetLabel: job
      replacement: {{ include "imgconv.metricsJob" . }}
{{- end -}}

{{/* The broker's management API for the API's unacked count, or empty. */}}
{{- define "imgconv.brokerManagementUrl" -}}
{{- if .Values.metrics.brokerManagement -}}
{{- if .Values.rabbitmq.enabled -}}
{{- printf "http://%s:15672" (include "imgconv.rabbitmqHost" .) -}}
{{- else -}}
{{- .Values.rabbitmq.external.managementUrl -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* PROMETHEUS_MULTIPROC_DIR: where several processes of one pod write their metrics. */}}
{{- define "imgconv.multiprocessDir" -}}/var/run/imgconv-metrics{{- end -}}

{{/*
The OTEL_* env of the API and worker containers (nothing when tracing is off): the endpoint,
the sampler, and the pod's identity ahead of the resource attributes given as values.
*/}}
{{- define "imgconv.tracingEnv" -}}
{{- $t := .Values.tracing -}}
{{- if $t.enabled }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.endpoint | quote }}
{{- with $t.sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- with $t.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
- name: OTEL_POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
{{- $attributes := list (printf "k8s.namespace.name=%s" .Release.Namespace) "k8s.pod.name=$(OTEL_POD_NAME)" }}
{{- range $key, $value := $t.resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%v" $key $value) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- range $key, $value := $t.extraEnv }}
- name: {{ $key }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end -}}
