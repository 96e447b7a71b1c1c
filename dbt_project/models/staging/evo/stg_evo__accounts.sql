with

source as (

    select * from {{ source('evo', 'accounts') }}

),

renamed as (

    select
        ----------  ids
        account_id,
        parent_account_id,
        ancestor_ids,
        twilio_account_sid,
        trust_hub_profile_sid,
        logo_id,

        ----------  strings
        name as account_name,
        logo_uri,
        created_by,
        last_modified_by,
        extra_fields,

        ----------  numerics
        cast(max_phone_numbers as integer) as max_phone_numbers,

        ----------  booleans
        cast(is_byoa as boolean) as is_byoa,

        ----------  timestamps
        cast(date_created as timestamp with time zone) as created_at,
        cast(date_last_modified as timestamp with time zone) as last_modified_at,

        ----------  lineage
        cast(synced_at as timestamp with time zone) as synced_at

    from source

)

select * from renamed
